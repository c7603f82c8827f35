"""The FUSE adapter: one :class:`pyfuse3.Operations` class over a :class:`fsproto.vfs.Filesystem`.

It only translates: kernel inode numbers to paths (:class:`fsproto.mount.inodes.InodeTable`),
:class:`~fsproto.vfs.FileStat` to ``struct stat``, our errors to errno. It never parses bytes
and holds no file data. Shaped like pyfuse3's ``examples/passthroughfs.py`` minus its storage.

References:
* libfuse ``include/fuse_lowlevel.h`` -- lookup counts, ``forget``, readdirplus, timeouts;
* pyfuse3 ``src/pyfuse3/handlers.pxi`` -- only ``FUSEError`` may leave a handler;
* shared/specs/fuse.md -- the rule that keeps a mount alive, measured throughput knobs.

Every handler is wrapped by :func:`_translate`, the one place where errors become errno:
``FsprotoError`` -> :func:`fsproto.errors.errno_for`, anything else -> logged traceback + EIO,
so a bug in a format fails one syscall instead of killing the mount.

Limits:
* The filesystem is called from the trio thread only (handlers never await), so formats need
  no locking; one slow call stalls the mount for its duration.
* Writeback caching is off by default: with it the kernel owns file sizes and mtimes and
  ignores ours, which breaks views that do not read back exactly what was written (CMS text
  mode, F records padded to LRECL). Writes are therefore write-through: when ``write``
  returns, the format has the data. ``-o writeback_cache`` is allowed for byte-exact views
  (the daemon then syncfs()es before it stops on a signal). Measured: 4 KiB writes went
  from 3 to 13 MB/s on CMS and 20 to 47 MB/s on memfs; every write(2) still costs one
  GETXATTR security.capability round trip, which the kernel sends for FUSE on each write.
* Open-but-deleted files are not readable (see :mod:`fsproto.mount.inodes`).

The entry points to run a mount are :func:`mount` (a Filesystem you opened) and
:func:`fsproto.mount.daemon.mount_device` (what ``fsproto mount`` calls).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import posixpath
import queue
import stat
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

import pyfuse3

from fsproto.errors import (
    FsprotoError,
    InvalidName,
    InvalidOperation,
    IsADirectory,
    NameTooLong,
    NotFound,
    NotPermitted,
    errno_for,
)
from fsproto.mount.inodes import InodeTable, StaleInode
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


@dataclass
class _Handle:
    inode: int


@dataclass
class _DirHandle:
    """A directory listing frozen at opendir: readdir offsets index ``names``, so entries added
    or removed meanwhile never make another entry appear twice or be skipped."""

    inode: int
    names: list[str]
    stats: dict[str, FileStat] = field(default_factory=dict)
    generation: int = 0


class _Invalidator:
    """Tells the kernel to drop cached pages and attributes of an inode, from its own thread.

    Used when a write made the format's view differ from what the kernel assumes (e.g. CMS
    F records padded to LRECL). It cannot run inside the WRITE handler: the kernel holds the
    written pages locked until our reply, and invalidation waits for those locks.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def push(self, inode: int) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fuse-invalidate", daemon=True)
            self._thread.start()
        self._queue.put(inode)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while (inode := self._queue.get()) is not None:
            try:
                pyfuse3.invalidate_inode(inode, attr_only=False)
            except OSError as e:  # ENOENT: the kernel already forgot the inode
                log.debug("invalidate inode %d: %s", inode, e)


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
    inode whose file was deleted or replaced, EIO for anything unexpected.
    """

    enable_writeback_cache = False  # read by pyfuse3 at INIT; see the module docstring

    def __init__(self, fs: Filesystem, options: MountOptions | None = None) -> None:
        super().__init__()
        self.fs = fs
        self.options = options or MountOptions()
        self.enable_writeback_cache = self.options.writeback_cache
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
        self._invalidator = _Invalidator()
        self._blksize = max(512, fs.statfs().block_size)
        _tune_malloc()

    def shutdown(self) -> None:
        """Stop the helper thread (call after the main loop ended, before ``pyfuse3.close``)."""
        self._invalidator.stop()

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

    def _entry(self, parent: str, st: FileStat) -> pyfuse3.EntryAttributes:
        """Attributes for a new kernel reference to *st* (lookup, create, mkdir)."""
        # The format's name is canonical (CMS upper-cases): every spelling maps to one inode.
        inode = self.inodes.lookup(posixpath.join(parent, st.name))
        return self._attr(inode, st)

    def _changed(self) -> None:
        self._generation += 1

    def _canonical(self, parent: str, path: str) -> str:
        return posixpath.join(parent, self.fs.stat(path).name)

    # -- lookups ------------------------------------------------------------------------------
    @_translate
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent, path = self._child(parent_inode, name)
        return self._entry(parent, lookup_stat(self.fs, path))

    @_translate
    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for inode, nlookup in inode_list:
            self.inodes.forget(inode, nlookup)
            if inode not in self.inodes:
                self._sizes.pop(inode, None)

    @_translate
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attr(inode, self.fs.stat(self.inodes.path(inode)))

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
        return self._attr(inode, self.fs.stat(path))

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
        for index in range(start_id, len(d.names)):
            name = d.names[index]
            st = d.stats.get(name)
            if st is None:
                continue  # deleted after opendir: POSIX lets readdir omit it
            inode = self.inodes.ensure(posixpath.join(path, name))
            # readdirplus: a True reply hands the kernel one lookup reference on the inode.
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._attr(inode, st), index + 1):
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
        return self._entry(parent, st)

    @_translate
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent, path = self._child(parent_inode, name)
        canonical = self._canonical(parent, path)
        self.fs.rmdir(path)
        self._changed()
        self.inodes.detach(canonical)

    # -- namespace ---------------------------------------------------------------------------------
    @_translate
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent, path = self._child(parent_inode, name)
        canonical = self._canonical(parent, path)
        self.fs.unlink(path)
        self._changed()
        self.inodes.detach(canonical)

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
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise InvalidOperation("rename: RENAME_EXCHANGE is not supported")
        old_parent, old = self._child(parent_inode_old, name_old)
        new_parent, new = self._child(parent_inode_new, name_new)
        old_canonical = self._canonical(old_parent, old)
        try:
            replaced: str | None = self._canonical(new_parent, new)
        except FileNotFoundError:  # our NotFound subclasses it
            replaced = None
        if replaced is not None and flags & pyfuse3.RENAME_NOREPLACE:
            raise pyfuse3.FUSEError(errno.EEXIST)
        self.fs.rename(old, new)
        self._changed()
        if replaced is not None and replaced != old_canonical:
            self.inodes.detach(replaced)
        self.inodes.rename(old_canonical, self._canonical(new_parent, new))

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

    def _file_info(self, inode: int) -> pyfuse3.FileInfo:
        fh = self._new_fh()
        self._files[fh] = _Handle(inode)
        self.inodes.open(inode)
        fi = pyfuse3.FileInfo(fh=fh)
        fi.keep_cache = self.options.keep_cache
        fi.direct_io = self.options.direct_io
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
        return self._file_info(inode)

    @_translate
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent, path = self._child(parent_inode, name)
        st = self.fs.create(path)
        self._changed()
        attr = self._entry(parent, st)
        return self._file_info(attr.st_ino), attr

    @_translate
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return self.fs.read(self.inodes.path(self._files[fh].inode), off, size)

    @_translate
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        inode = self._files[fh].inode
        path = self.inodes.path(inode)
        written = self.fs.write(path, off, bytes(buf))
        self._changed()
        # The kernel now assumes size = max(old size, end of write). If the format's view
        # says otherwise (records padded, text re-encoded), make the kernel re-ask.
        new_size = self.fs.stat(path).size
        expected = max(self._sizes.get(inode, new_size), off + written)
        self._sizes[inode] = new_size
        if new_size != expected:
            self._invalidator.push(inode)
        return written

    @_translate
    async def flush(self, fh: int) -> None:
        # close(2) of one descriptor: writes are already in the format (write-through), and a
        # device flush per close would make `cp -r` fsync every file. fsync does that.
        pass

    @_translate
    async def fsync(self, fh: int, datasync: bool) -> None:
        self.fs.flush()

    @_translate
    async def release(self, fh: int) -> None:
        handle = self._files.pop(fh)
        self.inodes.release(handle.inode)

    # -- extended attributes -------------------------------------------------------------------------
    # Reading attributes of a directory never fails with EISDIR in POSIX: `ls -l` asks every
    # directory for its ACL and prints an error for anything but "no such attribute". A format
    # whose attributes belong to files only (CMS) may say IsADirectory; that means "none".
    @_translate
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        try:
            return self.fs.getxattr(self.inodes.path(inode), os.fsdecode(name))
        except IsADirectory:
            raise pyfuse3.FUSEError(errno.ENODATA) from None

    @_translate
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        try:
            return [os.fsencode(n) for n in self.fs.listxattr(self.inodes.path(inode))]
        except IsADirectory:
            return []

    @_translate
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        self.fs.setxattr(self.inodes.path(inode), os.fsdecode(name), bytes(value))
        self._changed()
        # An attribute can change the view (record format): the kernel must re-read the file.
        self._invalidator.push(inode)

    @_translate
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        # fsproto.vfs.Filesystem has no removexattr; formats that can remove one provide it.
        remove = getattr(self.fs, "removexattr", None)
        if remove is None:
            raise pyfuse3.FUSEError(errno.ENOTSUP)
        remove(self.inodes.path(inode), os.fsdecode(name))
        self._changed()
        self._invalidator.push(inode)


def mount(fs: Filesystem, mountpoint: str, options: MountOptions | None = None, **kwargs: Any) -> None:
    """Mount *fs* at *mountpoint* and serve in this process until unmounted or SIGINT/SIGTERM.

    On the way out the mount is removed and ``fs.close()`` is called (all data flushed).
    Keyword arguments go to :func:`fsproto.mount.daemon.serve` (``device`` to close last,
    ``ready`` called once the mount exists). Raises MountError, UsageError.
    """
    from fsproto.mount.daemon import serve

    serve(fs, mountpoint, options or MountOptions(), **kwargs)
