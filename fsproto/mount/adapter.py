"""The FUSE adapter: one :class:`pyfuse3.Operations` class over a :class:`fsproto.vfs.Filesystem`.

It only translates: kernel inode numbers to paths (:class:`fsproto.mount.inodes.InodeTable`),
:class:`~fsproto.vfs.FileStat` to ``struct stat``, our errors to errno. It never parses bytes
and holds no file data. Shaped like pyfuse3's ``examples/passthroughfs.py`` minus its storage.

References:
* libfuse ``include/fuse_lowlevel.h`` -- lookup counts, ``forget``, readdirplus, timeouts,
  negative entries (a reply with inode 0);
* pyfuse3 ``src/pyfuse3/handlers.pxi`` -- only ``FUSEError`` may leave a handler;
* Linux ``fs/fuse/file.c`` -- with writeback caching the kernel owns sizes and mtimes of
  regular files; every write(2) first asks GETXATTR ``security.capability``;
* shared/specs/fuse.md -- the rule that keeps a mount alive, measured throughput knobs.

Every handler is wrapped by :func:`_translate`, the one place where errors become errno:
``FsprotoError`` -> :func:`fsproto.errors.errno_for`, anything else -> logged traceback + EIO,
so a bug in a format fails one syscall instead of killing the mount.

What the kernel is allowed to cache (the mount is the device's only writer):

* Writeback caching is on when the format declares ``exact_sizes`` (FAT, a CMS binary view,
  plugins that say so) unless ``-o no_writeback_cache``: the kernel gathers small writes into
  large WRITE requests. A file whose ``FileStat.exact_size`` is False (CMS F records, padded
  to LRECL) is opened with direct I/O instead, and after each write that padded it the kernel is
  told the new size and bytes (``notify_store``). Views that are not byte-exact (CMS text) keep
  write-through: see docs/mount.md.
* The ``security.capability`` probe the kernel sends before every write(2), and ``ls -l``'s ACL
  and SELinux probes, are answered here without calling the format for namespaces the format
  does not store; a format with no extended attributes at all (or ``-o noxattr``) answers
  ENOSYS once, after which the kernel stops asking (no round trip per write). libfuse 3.14 cannot
  negotiate FUSE_HANDLE_KILLPRIV_V2, the other way to stop the per-write probe.
* A failed lookup is answered as a negative entry cached for ``entry_timeout``; creating a name
  that differs only in case (case-insensitive formats) invalidates the cached negatives of it.

Open-file semantics: on a format with ``supports_orphans``, unlink or rename-over of an open
file makes it an orphan (:meth:`fsproto.vfs.Filesystem.orphan`): its descriptors keep working
and its blocks are freed at the last release (or when the mount ends). Without that capability
such descriptors fail with ESTALE.

Limits: the filesystem is called from the trio thread only (handlers never await), so formats
need no locking and requests are served one at a time; one slow call stalls the mount.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import posixpath
import stat
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

import pyfuse3

from fsproto.errors import (
    FsprotoError,
    InvalidName,
    IsADirectory,
    NameTooLong,
    NotFound,
    NotPermitted,
    errno_for,
)
from fsproto.mount.inodes import InodeTable, StaleInode
from fsproto.mount.notify import KernelNotifier
from fsproto.mount.options import MountOptions
from fsproto.vfs import FileStat, Filesystem

log = logging.getLogger("fsproto.fuse")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

# glibc serves every allocation >= 128 KiB (the default M_MMAP_THRESHOLD) as fresh mmap'd pages
# and unmaps them on free: a 1 MiB write request then page-faults on each of its buffers
# (request, records, blocks), which costs more than the format's work (tools/bench_cms.py's
# read benchmark shows the same). Heap buffers up to 8 MiB, kept up to 32 MiB: bounded memory.
_MMAP_THRESHOLD = 8 << 20
_TRIM_THRESHOLD = 32 << 20
# Negative entries remembered per mount (to invalidate other spellings of a created name);
# past this, lookups that fail are answered ENOENT uncached: correct, only slower.
_NEGATIVE_MAX = 65536


@functools.cache
def _tune_malloc() -> None:
    """Once per serving process; a no-op without glibc's mallopt."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
    mallopt(-1, _TRIM_THRESHOLD)  # M_TRIM_THRESHOLD


def _translate(fn: F) -> F:
    """Wrap one handler: our errors become their errno, anything else is logged and becomes EIO."""
    op = fn.__name__

    @functools.wraps(fn)
    async def wrapper(self: "FsprotoOperations", *args: Any) -> Any:
        try:
            return await fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except (FsprotoError, StaleInode) as e:
            code = errno_for(e) if isinstance(e, FsprotoError) else e.errno
            if code == errno.EIO:
                # Corruption or media errors: str(e) names device, block and offset.
                log.error("%s: %s: %s", op, type(e).__name__, e)
            else:
                log.debug("%s: %s -> %s", op, e, errno.errorcode.get(code, code))
            raise pyfuse3.FUSEError(code) from None
        except Exception:
            log.exception("%s: unexpected error, answering EIO", op)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


@dataclass(slots=True)
class _Handle:
    inode: int
    exact: bool  # the file's size follows POSIX (see FileStat.exact_size)


@dataclass
class _DirHandle:
    """A directory listing frozen at opendir: readdir offsets index ``names``, so entries added
    or removed meanwhile never make another entry appear twice or be skipped."""

    inode: int
    names: list[str]
    stats: dict[str, FileStat] = field(default_factory=dict)
    generation: int = 0


def _overrides(fs: Filesystem, name: str) -> bool:
    return getattr(type(fs), name) is not getattr(Filesystem, name)


def lookup_stat(fs: Filesystem, path: str) -> FileStat:
    """``fs.stat`` for a kernel LOOKUP: a name the format cannot hold does not exist (ENOENT, as
    vfat's lookup answers and stat(2) expects); only creating one is EINVAL. A name too long
    stays ENAMETOOLONG (POSIX path resolution). See docs/errno.md."""
    try:
        return fs.stat(path)
    except NameTooLong:
        raise
    except InvalidName as e:
        raise NotFound(f"{path}: no such file ({e.message})") from None


class FsprotoOperations(pyfuse3.Operations):
    """Serves one :class:`~fsproto.vfs.Filesystem` to the kernel.

    Every handler raises only ``pyfuse3.FUSEError`` (see :func:`_translate`); the errno is
    the one :func:`fsproto.errors.errno_for` gives for the format's error, ESTALE for an
    inode whose file was deleted or replaced (formats without orphans), EIO for anything
    unexpected.
    """

    enable_writeback_cache = False  # read by pyfuse3 at INIT; set per mount in __init__

    def __init__(self, fs: Filesystem, options: MountOptions | None = None) -> None:
        super().__init__()
        self.fs = fs
        self.options = options or MountOptions()
        wb = self.options.writeback_cache
        self.writeback = bool(fs.exact_sizes if wb is None else wb) and not self.options.direct_io
        self.enable_writeback_cache = self.writeback
        self.inodes = InodeTable()
        self._files: dict[int, _Handle] = {}
        self._dirs: dict[int, _DirHandle] = {}
        self._next_fh = 1
        # Bumped by every change made through the mount; open directory listings compare it
        # to know whether their cached attributes are still current.
        self._generation = 0
        # The size the kernel was last told per inode, to notice when a write changed the size
        # differently from what the kernel computes (max(old size, end of write)).
        self._sizes: dict[int, int] = {}
        # parent inode -> casefolded name -> spellings answered as negative entries.
        self._negative: dict[int, dict[str, set[bytes]]] = {}
        self._negative_count = 0
        self._notify = KernelNotifier()
        self._blksize = max(512, fs.statfs().block_size)
        self._has_xattrs = self.options.xattr and (_overrides(fs, "getxattr") or _overrides(fs, "listxattr"))
        self._xattr_prefixes = tuple(ns.encode() + b"." for ns in fs.xattr_namespaces)
        self._orphans = bool(fs.supports_orphans) and not self.options.read_only
        _tune_malloc()

    def shutdown(self) -> None:
        """Free orphans still open and stop the helper thread (after the main loop ended,
        before ``pyfuse3.close``)."""
        for inode in {h.inode for h in self._files.values()}:
            if self.inodes.is_orphan(inode):
                try:
                    self._bury(inode)
                except Exception:  # logged; the other orphans and the unmount go on
                    log.exception("freeing the orphan of inode %d failed", inode)
        self._notify.stop()

    # -- helpers ------------------------------------------------------------------------------
    def _child(self, parent_inode: int, name: bytes) -> tuple[str, str]:
        """(parent path, child path as the kernel spelled it)."""
        parent = self.inodes.path(parent_inode)
        return parent, posixpath.join(parent, os.fsdecode(name))

    def _attr(self, inode: int, st: FileStat) -> pyfuse3.EntryAttributes:
        o = self.options
        a = pyfuse3.EntryAttributes()
        a.st_ino = inode
        a.generation = 0  # inode numbers are never reused (see InodeTable)
        a.entry_timeout = o.entry_timeout
        a.attr_timeout = o.attr_timeout
        kind = stat.S_IFDIR if st.is_dir else stat.S_IFREG
        a.st_mode = kind | o.permission_bits(st.mode, is_dir=st.is_dir)
        a.st_nlink = max(st.nlink, 2 if st.is_dir else 1)
        a.st_uid = o.uid
        a.st_gid = o.gid
        a.st_size = st.size
        a.st_blksize = self._blksize
        a.st_blocks = (st.alloc_bytes + 511) // 512
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = st.mtime_ns
        if not st.is_dir:
            self._sizes[inode] = st.size
        return a

    def _entry(self, parent_inode: int, parent: str, st: FileStat) -> pyfuse3.EntryAttributes:
        """Attributes for a new kernel reference to *st* (lookup, create, mkdir)."""
        # The format's name is canonical (CMS upper-cases): every spelling maps to one inode.
        inode = self.inodes.lookup(posixpath.join(parent, st.name))
        return self._attr(inode, st)

    def _changed(self) -> None:
        self._generation += 1

    def _canonical(self, parent: str, path: str) -> str:
        return posixpath.join(parent, self.fs.stat(path).name)

    # -- negative entries -----------------------------------------------------------------------
    def _negative_entry(self, parent_inode: int, name: bytes) -> pyfuse3.EntryAttributes:
        """A "no such file" the kernel may cache for entry_timeout (st_ino 0)."""
        if self._negative_count >= _NEGATIVE_MAX or not self.options.entry_timeout:
            raise pyfuse3.FUSEError(errno.ENOENT)
        spellings = self._negative.setdefault(parent_inode, {}).setdefault(os.fsdecode(name).casefold(), set())
        if name not in spellings:
            spellings.add(name)
            self._negative_count += 1
        a = pyfuse3.EntryAttributes()
        a.st_ino = 0
        a.entry_timeout = self.options.entry_timeout
        return a

    def _name_appeared(self, parent_inode: int, name: bytes) -> None:
        """A file named *name* now exists in *parent_inode*: the kernel replaces its own negative
        entry for this spelling, but must be told about other spellings of a case-insensitive
        format (``ls foo`` then ``touch FOO`` must make ``foo`` appear)."""
        by_name = self._negative.get(parent_inode)
        if not by_name:
            return
        spellings = by_name.pop(os.fsdecode(name).casefold(), None)
        if spellings:
            self._negative_count -= len(spellings)
            for other in spellings - {name}:
                self._notify.entry(parent_inode, other)

    # -- lookups ------------------------------------------------------------------------------
    @_translate
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent, path = self._child(parent_inode, name)
        try:
            st = lookup_stat(self.fs, path)
        except NotFound:
            return self._negative_entry(parent_inode, name)
        return self._entry(parent_inode, parent, st)

    @_translate
    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for inode, nlookup in inode_list:
            self.inodes.forget(inode, nlookup)
            if inode not in self.inodes:
                self._sizes.pop(inode, None)
                self._negative.pop(inode, None)

    @_translate
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        a = self._attr(inode, self.fs.stat(self.inodes.path(inode)))
        if self.inodes.is_orphan(inode):
            a.st_nlink = 0  # what fstat of an unlinked open file says on every kernel filesystem
        return a

    @_translate
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        path = self.inodes.path(inode)
        self.fs.stat(path)  # ENOENT/ESTALE before anything else
        # Owners and permission bits come from the mount options, not the format (docs/errno.md).
        if self.options.refuses_attribute_change(mode=attr.st_mode if fields.update_mode else None,
                                                 uid=attr.st_uid if fields.update_uid else None,
                                                 gid=attr.st_gid if fields.update_gid else None):
            raise pyfuse3.FUSEError(errno.EPERM)
        if fields.update_size:
            self.fs.truncate(path, attr.st_size)
            self._changed()
        if fields.update_mtime:
            self.fs.set_mtime(path, attr.st_mtime_ns)
            self._changed()
        a = self._attr(inode, self.fs.stat(path))
        if self.inodes.is_orphan(inode):
            a.st_nlink = 0
        return a

    @_translate
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = self.fs.statfs()
        out = pyfuse3.StatvfsData()
        out.f_bsize = out.f_frsize = s.block_size
        out.f_blocks = s.total_blocks
        out.f_bfree = out.f_bavail = s.free_blocks
        out.f_files = s.total_files
        out.f_ffree = out.f_favail = s.free_files
        out.f_namemax = s.name_max
        return out

    # -- directories ------------------------------------------------------------------------------
    @_translate
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        entries = self.fs.listdir(self.inodes.path(inode))
        fh = self._new_fh()
        self._dirs[fh] = _DirHandle(
            inode, [e.name for e in entries], {e.name: e for e in entries}, self._generation
        )
        self.inodes.open(inode)
        return fh

    @_translate
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        d = self._dirs[fh]
        path = self.inodes.path(d.inode)
        if d.generation != self._generation:
            # Something changed since the listing was taken: refresh attributes (and drop
            # deleted names) but keep the frozen order, so offsets stay valid.
            d.stats = {e.name: e for e in self.fs.listdir(path)}
            d.generation = self._generation
        prefix = path.rstrip("/") + "/"
        reply = pyfuse3.readdir_reply
        for index in range(start_id, len(d.names)):
            name = d.names[index]
            st = d.stats.get(name)
            if st is None:
                continue  # deleted after opendir: POSIX lets readdir omit it
            inode = self.inodes.ensure(prefix + name)
            # readdirplus: a True reply hands the kernel one lookup reference on the inode,
            # and the attributes, so `ls -l` needs no GETATTR or LOOKUP per file.
            if not reply(token, os.fsencode(name), self._attr(inode, st), index + 1):
                self.inodes.drop_unreferenced(inode)
                break
            self.inodes.add_lookup(inode)

    @_translate
    async def releasedir(self, fh: int) -> None:
        d = self._dirs.pop(fh)
        self.inodes.release(d.inode)

    @_translate
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent, path = self._child(parent_inode, name)
        st = self.fs.mkdir(path)
        self._changed()
        self._name_appeared(parent_inode, name)
        return self._entry(parent_inode, parent, st)

    @_translate
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent, path = self._child(parent_inode, name)
        canonical = self._canonical(parent, path)
        self.fs.rmdir(path)
        self._changed()
        self.inodes.detach(canonical)

    # -- namespace ---------------------------------------------------------------------------------
    def _open_inode(self, path: str) -> int | None:
        """The inode of *path* if a descriptor is open on it and the format keeps orphans."""
        if not self._orphans:
            return None
        inode = self.inodes.inode_of(path)
        return inode if inode is not None and self.inodes.opens(inode) else None

    @_translate
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent, path = self._child(parent_inode, name)
        canonical = self._canonical(parent, path)
        inode = self._open_inode(canonical)
        if inode is not None:
            self.inodes.orphan(inode, self.fs.orphan(path))
        else:
            self.fs.unlink(path)
            self.inodes.detach(canonical)
        self._changed()

    @_translate
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        old_parent, old = self._child(parent_inode_old, name_old)
        new_parent, new = self._child(parent_inode_new, name_new)
        old_canonical = self._canonical(old_parent, old)
        if flags & pyfuse3.RENAME_EXCHANGE:
            new_canonical = self._canonical(new_parent, new)  # NotFound -> ENOENT, as the kernel says
            self.fs.exchange(old, new)
            self._changed()
            self.inodes.exchange(old_canonical, new_canonical)
            return
        try:
            replaced: str | None = self._canonical(new_parent, new)
        except FileNotFoundError:  # our NotFound subclasses it
            replaced = None
        if replaced is not None and flags & pyfuse3.RENAME_NOREPLACE:
            raise pyfuse3.FUSEError(errno.EEXIST)
        victim = self._open_inode(replaced) if replaced is not None and replaced != old_canonical else None
        if victim is not None:
            private = self.fs.rename_orphaning(old, new)
            if private is not None:
                self.inodes.orphan(victim, private)
        else:
            self.fs.rename(old, new)
        self._changed()
        if replaced is not None and replaced != old_canonical:
            self.inodes.detach(replaced)
        self.inodes.rename(old_canonical, self._canonical(new_parent, new))
        self._name_appeared(parent_inode_new, name_new)

    # Kinds of object no format here has: EPERM, as link(2)/symlink(2)/mknod(2) and vfat say
    # (without these handlers pyfuse3 answers ENOSYS, "function not implemented").
    @_translate
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise NotPermitted("hard links are not supported by this format")

    @_translate
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise NotPermitted("symbolic links are not supported by this format")

    @_translate
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise NotPermitted("device nodes, FIFOs and sockets are not supported by this format")

    # -- files ----------------------------------------------------------------------------------------
    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def _file_info(self, inode: int, st: FileStat) -> pyfuse3.FileInfo:
        exact = st.exact_size or not self.fs.exact_sizes
        fh = self._new_fh()
        self._files[fh] = _Handle(inode, exact)
        self.inodes.open(inode)
        fi = pyfuse3.FileInfo(fh=fh)
        fi.keep_cache = self.options.keep_cache
        # A file whose writes may pad it (exact_size False) bypasses the page cache: under
        # writeback the kernel would keep its own idea of the size.
        fi.direct_io = self.options.direct_io or not exact
        return fi

    @_translate
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        path = self.inodes.path(inode)
        st = self.fs.stat(path)
        if st.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        # libfuse enables atomic O_TRUNC, so the kernel sends it here instead of a setattr.
        if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY and st.size:
            self.fs.truncate(path, 0)
            self._changed()
            st = self.fs.stat(path)
        return self._file_info(inode, st)

    @_translate
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent, path = self._child(parent_inode, name)
        st = self.fs.create(path)
        self._changed()
        self._name_appeared(parent_inode, name)
        attr = self._entry(parent_inode, parent, st)
        return self._file_info(attr.st_ino, st), attr

    @_translate
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return self.fs.read(self.inodes.path(self._files[fh].inode), off, size)

    @_translate
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._files[fh]
        inode = handle.inode
        path = self.inodes.path(inode)
        written = self.fs.write(path, off, buf)
        self._generation += 1
        old = self._sizes.get(inode)
        expected = off + written if old is None or old < off + written else old
        if self.fs.exact_sizes and handle.exact:
            # Byte-exact: the size is what the kernel computed, no need to ask the format.
            self._sizes[inode] = expected
            return written
        # The kernel now assumes size = max(old size, end of write). If the format's view
        # says otherwise (records padded, text re-encoded), correct the kernel.
        new_size = self.fs.stat(path).size
        self._sizes[inode] = new_size
        if new_size != expected:
            if self.writeback and new_size > expected:
                # Direct I/O file: no page of it is locked now, so the kernel can take the
                # padding (and the size it implies) inline, before the next write.
                pyfuse3.notify_store(inode, expected, self.fs.read(path, expected, new_size - expected))
            else:
                self._notify.inode(inode)
        return written

    @_translate
    async def flush(self, fh: int) -> None:
        # close(2) of one descriptor: the kernel has sent its cached writes before this; a
        # device flush per close would make `cp -r` fsync every file. fsync does that.
        pass

    @_translate
    async def fsync(self, fh: int, datasync: bool) -> None:
        self.fs.flush()

    @_translate
    async def release(self, fh: int) -> None:
        handle = self._files.pop(fh)
        self.inodes.release(handle.inode)
        if self.inodes.is_orphan(handle.inode) and not self.inodes.opens(handle.inode):
            self._bury(handle.inode)

    def _bury(self, inode: int) -> None:
        """The last descriptor of an orphan closed: free its blocks."""
        private = self.inodes.path(inode)
        try:
            self.fs.unlink(private)
        finally:
            self.inodes.bury(inode)
            self._changed()

    # -- extended attributes -------------------------------------------------------------------------
    # Reading attributes of a directory never fails with EISDIR in POSIX: `ls -l` asks every
    # directory for its ACL and prints an error for anything but "no such attribute". A format
    # whose attributes belong to files only (CMS) may say IsADirectory; that means "none".
    @_translate
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if not self._has_xattrs:
            raise pyfuse3.FUSEError(errno.ENOSYS)  # the kernel stops asking for this mount
        if not name.startswith(self._xattr_prefixes):
            raise pyfuse3.FUSEError(errno.ENODATA)  # security.capability before every write
        try:
            return self.fs.getxattr(self.inodes.path(inode), os.fsdecode(name))
        except IsADirectory:
            raise pyfuse3.FUSEError(errno.ENODATA) from None

    @_translate
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        if not self._has_xattrs:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        try:
            return [os.fsencode(n) for n in self.fs.listxattr(self.inodes.path(inode))]
        except IsADirectory:
            return []

    @_translate
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        self.fs.setxattr(self.inodes.path(inode), os.fsdecode(name), bytes(value))
        self._changed()
        # An attribute can change the view (record format): the kernel must re-read the file.
        self._notify.inode(inode)

    @_translate
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        # fsproto.vfs.Filesystem has no removexattr; formats that can remove one provide it.
        remove = getattr(self.fs, "removexattr", None)
        if remove is None:
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        remove(self.inodes.path(inode), os.fsdecode(name))
        self._changed()
        self._notify.inode(inode)
