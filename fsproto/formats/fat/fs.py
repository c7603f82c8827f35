"""The :class:`fsproto.vfs.Filesystem` view of a FAT12/16/32 volume, with directories.

References: fatgen103 sections 4-7. Write ordering (so a cut after any device write leaves a
volume that fsck repairs without touching other files): new data clusters first, then the FAT
(every copy), then the directory entry; shrinking writes the directory entry first and frees
clusters after. A cut can therefore leak clusters or leave a chain longer than the file size,
both of which readers ignore and fsck repairs. Rename writes the new entry before deleting the
old one (a cut leaves the file under both names, reported by fsck as a cross-link).

Limits: no hard links or permissions (FAT has none); times are stored as UTC with FAT's
2-second resolution; names are matched case-insensitively.
"""

from __future__ import annotations

import contextlib
import stat as _stat
import time
from dataclasses import replace

from fsproto.errors import (AlreadyExists, DirectoryNotEmpty, FileTooBig, FormatError, FsReadOnly,
                            InvalidOperation, IsADirectory, NotADirectory, NotFound)
from fsproto.formats.fat import directory as dirmod
from fsproto.formats.fat import files, layout
from fsproto.formats.fat.directory import DirEntry, Directory
from fsproto.formats.fat.fat_table import FatTable
from fsproto.formats.fat.orphans import OrphanDir
from fsproto.formats.fat.volume import Volume
from fsproto.vfs import FileStat, Filesystem, FsStats, split_path

_DIR_CACHE_MAX = 64  # directories kept parsed (each at most 2 MiB): bounds memory
_CHAIN_CACHE_MAX = 256


class FatFilesystem(Filesystem):
    """Read-write FAT view; writable iff the device is."""

    exact_sizes = True  # a directory entry holds the byte size; data reads back as written
    xattr_namespaces = ()  # FAT stores no extended attributes
    supports_orphans = True  # see orphans.py

    def __init__(self, vol: Volume, fat: FatTable | None = None) -> None:
        """Raises FormatError, DeviceError."""
        self.vol = vol
        self.fat = fat or FatTable(vol)
        self.read_only = vol.read_only
        g = vol.geo
        self.root_cluster = g.root_cluster if g.fat_type == 32 else 0
        self._dirs: dict[int, Directory] = {}
        self._chains: dict[int, list[int]] = {}
        self._fsinfo_dirty = False
        self._orphans = OrphanDir()
        self.label = self._read_label()

    # -- plumbing -----------------------------------------------------------------------------
    def _read_label(self) -> str:
        raw = bytes(self.vol.boot_fields.get("BS_VolLab", b"")).rstrip(b" \0")
        try:
            root = self._dir(self.root_cluster)
        except FormatError:
            return raw.decode("cp437")
        for i in range(len(root.raw) // 32):
            e = root.raw[i * 32 : i * 32 + 32]
            if e[0] == layout.DIR_END:
                break
            if e[0] != layout.DIR_FREE and e[11] & layout.ATTR_LONG_NAME_MASK == layout.ATTR_VOLUME_ID:
                return bytes(e[:11]).rstrip(b" ").decode("cp437")
        return "" if raw == b"NO NAME" else raw.decode("cp437")

    def _dir(self, cluster: int, owner: str = "") -> Directory:
        d = self._dirs.get(cluster)
        if d is None:
            if len(self._dirs) >= _DIR_CACHE_MAX:
                self._dirs.clear()
            d = self._dirs[cluster] = Directory(self.vol, self.fat, cluster, owner=owner)
        return d

    def _chain(self, entry: DirEntry, path: str, *, need: int | None = None) -> list[int]:
        """The first *need* clusters of the file (all when None), continuing a cached walk."""
        c = self._chains.get(entry.cluster)
        if c is None or (need is None or len(c) < need):
            c = self.fat.chain(entry.cluster, limit=need, owner=path, prefix=c)
            if len(self._chains) >= _CHAIN_CACHE_MAX:
                self._chains.clear()
            self._chains[entry.cluster] = c
        return c if need is None else c[:need]

    def _lookup(self, path: str) -> tuple[Directory | None, DirEntry | None]:
        """(parent directory, entry) for *path*; (None, None) for the root.

        Raises NotFound, NotADirectory, InvalidName, FormatError (a directory inside itself).
        """
        if not path.startswith("/"):
            from fsproto.errors import InvalidName

            raise InvalidName(f"path {path!r} is not absolute")
        orphan = self._orphans.lookup(path)
        if orphan is not None:
            return self._orphans, orphan  # type: ignore[return-value]  # stands in for the parent
        parts = [dirmod.strip_trailing_dots(p) for p in path.split("/") if p and p != "."]
        if ".." in parts:
            from fsproto.errors import InvalidName

            raise InvalidName(f"path {path!r} contains '..'")
        if not parts:
            return None, None
        cur = self._dir(self.root_cluster, "/")
        seen = {self.root_cluster}
        walked = ""
        for k, name in enumerate(parts):
            e = cur.find(name)
            walked += "/" + name
            if e is None:
                raise NotFound(f"{walked}: no such file or directory", device=self.vol.name)
            if k == len(parts) - 1:
                return cur, e
            if not e.is_dir:
                raise NotADirectory(f"{walked}: not a directory", device=self.vol.name)
            cur = self._subdir(e, walked, seen)
        raise AssertionError("unreachable")

    def _subdir(self, e: DirEntry, path: str, seen: set[int]) -> Directory:
        if e.cluster == 0 or e.cluster in seen:
            raise self.vol.format_error(f"{path}: directory entry points at cluster {e.cluster}, which is "
                                        "the root or one of its own ancestors", cluster=e.cluster,
                                        struct="directory")
        seen.add(e.cluster)
        return self._dir(e.cluster, path)

    def _dir_at(self, path: str) -> tuple[Directory, int]:
        """The directory *path* itself and its first cluster. Raises NotFound, NotADirectory."""
        parent, e = self._lookup(path)
        if e is None:
            return self._dir(self.root_cluster, "/"), self.root_cluster
        if not e.is_dir:
            raise NotADirectory(f"{path}: not a directory", device=self.vol.name)
        ancestors = {self.root_cluster} | ({parent.cluster} if parent else set())
        return self._subdir(e, path, ancestors), e.cluster

    def _check_writable(self) -> None:
        if self.read_only:
            raise FsReadOnly("filesystem is read-only", device=self.vol.name)

    def _stat(self, e: DirEntry) -> FileStat:
        cs = self.vol.geo.cluster_size
        # As the kernel's fat_make_mode (fs/fat/fat.h): all bits, minus write for a read-only
        # file (a read-only directory keeps them: without `rodir` the kernel ignores the bit
        # there, Windows sets it on customised folders); the mount's fmask/dmask take the rest.
        ro = e.attr & layout.ATTR_READ_ONLY and not e.is_dir
        mode = (_stat.S_IFDIR if e.is_dir else _stat.S_IFREG) | (0o555 if ro else 0o777)
        alloc = cs if e.is_dir else files.clusters_for(e.size, cs) * cs
        extra = {"short": dirmod.short_display(e.short, 0), "attr": f"{e.attr:02x}"}
        return FileStat(e.name, e.is_dir, 0 if e.is_dir else e.size, e.mtime_ns, alloc, mode & 0o7777,
                        2 if e.is_dir else 1, extra)

    # -- lookups -----------------------------------------------------------------------------
    def stat(self, path: str) -> FileStat:
        """Raises NotFound, NotADirectory, InvalidName, FormatError."""
        _, e = self._lookup(path)
        if e is None:
            return FileStat("/", True, 0, 0, self.vol.geo.cluster_size, 0o777, 2)
        return self._stat(e)

    def listdir(self, path: str = "/") -> list[FileStat]:
        """Raises NotFound, NotADirectory, FormatError."""
        d, _ = self._dir_at(path)
        return [self._stat(e) for e in d.entries()]

    def _read_plan(self, path: str, offset: int, size: int) -> tuple[list[int], int]:
        """(chain, bytes to read at *offset*) for a read. Raises like :meth:`read`."""
        _, e = self._lookup(path)
        if e is None or e.is_dir:
            raise IsADirectory(f"{path}: is a directory", device=self.vol.name)
        if offset < 0 or size < 0:
            raise InvalidOperation(f"negative offset or size ({offset}, {size})")
        end = min(e.size, offset + size)
        if offset >= end:
            return [], 0
        cs = self.vol.geo.cluster_size
        need = files.clusters_for(end, cs)
        chain = self._chain(e, path, need=need)
        if len(chain) < need:
            raise self.vol.format_error(f"{path}: chain has {len(chain)} clusters, size {e.size} needs "
                                        f"{files.clusters_for(e.size, cs)}", cluster=chain[-1] if chain else
                                        e.cluster, struct="FAT")
        return chain, end - offset

    def read(self, path: str, offset: int, size: int) -> bytes:
        """Raises NotFound, IsADirectory, FormatError (chain shorter than the size, loops)."""
        chain, n = self._read_plan(path, offset, size)
        return files.read_range(self.vol, chain, offset, n) if n else b""

    def readinto(self, path: str, offset: int, buf: bytearray | memoryview) -> int:
        """:meth:`read` into *buf*, straight from the device (no allocation). Raises like read."""
        chain, n = self._read_plan(path, offset, len(buf))
        if n:
            files.read_range_into(self.vol, chain, offset, memoryview(buf)[:n])
        return n

    # -- data --------------------------------------------------------------------------------
    def _file(self, path: str) -> tuple[Directory, DirEntry]:
        self._check_writable()
        parent, e = self._lookup(path)
        if e is None or e.is_dir:
            raise IsADirectory(f"{path}: is a directory", device=self.vol.name)
        return parent, e

    def _resize(self, parent: Directory, e: DirEntry, path: str, new_size: int, offset: int = 0,
                data: bytes = b"") -> None:
        """Write *data* at *offset* and set the size to *new_size* (growing or shrinking)."""
        if new_size > files.MAX_FILE_SIZE:
            raise FileTooBig(f"{path}: {new_size} bytes is more than FAT's 4 GiB - 1", device=self.vol.name)
        cs = self.vol.geo.cluster_size
        need = files.clusters_for(new_size, cs)
        now = dirmod.ns_to_fat(time.time_ns())
        if new_size < e.size:
            chain = self.fat.chain(e.cluster, owner=path)
            e2 = replace(e, size=new_size, cluster=e.cluster if need else 0, wrt_date=now[0], wrt_time=now[1],
                         attr=e.attr | layout.ATTR_ARCHIVE)
            parent.update(e2)  # the entry first: a cut now only leaks the tail clusters
            if need:
                self.fat.set(chain[need - 1], self.fat.eoc)
            self.fat.free_chain(chain[need:])
            self.fat.flush()
            self._chains.pop(e.cluster, None)
            self._fsinfo_dirty = True
            return
        have = self._chain(e, path, need=need) if e.cluster else []
        new = self.fat.allocate(need - len(have), after=have[-1] if have else 0) if need > len(have) else []
        full = have + new
        try:
            if offset > e.size:
                files.zero_range(self.vol, full, e.size, offset)
            elif new_size > e.size and not data:
                files.zero_range(self.vol, full, e.size, new_size)
            files.write_range(self.vol, full, offset, data)
            if new:
                if have:
                    self.fat.set(have[-1], new[0])
                self.fat.flush()
                self._fsinfo_dirty = True
        except BaseException:
            if new:  # give the clusters back in memory; nothing on disk points at them yet
                self.fat.free_chain(new)
                if have:
                    self.fat.set(have[-1], self.fat.eoc)
            raise
        if full:
            self._chains[full[0]] = full
        e2 = replace(e, size=new_size, cluster=full[0] if full else 0, wrt_date=now[0], wrt_time=now[1],
                     attr=e.attr | layout.ATTR_ARCHIVE)
        parent.update(e2)

    def write(self, path: str, offset: int, data: bytes) -> int:
        """Raises FsReadOnly, NotFound, IsADirectory, NoSpace, FileTooBig, FormatError."""
        parent, e = self._file(path)
        if offset < 0:
            raise InvalidOperation(f"negative offset {offset}")
        if not data:
            return 0  # POSIX: an empty write neither extends the file nor changes its time
        self._resize(parent, e, path, max(e.size, offset + len(data)), offset, bytes(data))
        return len(data)

    def truncate(self, path: str, size: int) -> None:
        """Raises FsReadOnly, NotFound, IsADirectory, NoSpace, FileTooBig, FormatError."""
        parent, e = self._file(path)
        if size < 0:
            raise InvalidOperation(f"negative size {size}")
        if size != e.size:
            self._resize(parent, e, path, size, size)

    # -- namespace ----------------------------------------------------------------------------
    def _new_slot(self, path: str) -> tuple[Directory, int, str]:
        """Parent directory, its cluster and the checked new name. Raises AlreadyExists etc."""
        self._check_writable()
        parent_path, name = split_path(path)
        if not name:
            raise AlreadyExists("/ exists", device=self.vol.name)
        name = dirmod.strip_trailing_dots(name)
        dirmod.check_long_name(name)
        d, cluster = self._dir_at(parent_path)
        if d.find(name) is not None:
            raise AlreadyExists(f"{path} exists", device=self.vol.name)
        return d, cluster, name

    def _place(self, parent: Directory, name: str, attr: int, cluster: int,
               template: DirEntry | None = None) -> DirEntry:
        """Add an entry for *name* to *parent*, with a long name unless it is an exact 8.3 name."""
        short = dirmod.exact_short_name(name)
        taken = parent.shorts()
        long_name = None
        if short is None or short in taken:
            short, long_name = dirmod.generate_short_name(name, taken), name
        if template is not None:
            entry = replace(template, short=short, name=name, ntres=0, slot=-1, first_slot=-1)
        else:
            entry = dirmod.new_entry(short, name, attr, cluster, time.time_ns())
        return parent.add(entry, long_name)

    def create(self, path: str) -> FileStat:
        """Raises FsReadOnly, AlreadyExists, InvalidName, NameTooLong, NoSpace, NotFound."""
        d, _, name = self._new_slot(path)
        return self._stat(self._place(d, name, layout.ATTR_ARCHIVE, 0))

    def unlink(self, path: str) -> None:
        """Raises FsReadOnly, NotFound, IsADirectory, FormatError."""
        parent, e = self._file(path)
        chain = self.fat.chain(e.cluster, owner=path)  # walk first: a broken chain changes nothing
        parent.remove(e)
        self.fat.free_chain(chain)
        self.fat.flush()
        self._chains.pop(e.cluster, None)
        self._fsinfo_dirty = True

    def orphan(self, path: str) -> str:
        """Remove *path*'s entry, keep its clusters (see orphans.py); returns the private path.
        Raises FsReadOnly, NotFound, IsADirectory."""
        parent, e = self._file(path)
        parent.remove(e)
        return self._orphans.adopt(e)

    def rename_orphaning(self, old: str, new: str) -> str | None:
        """rename(), but a replaced file keeps its clusters as an orphan. Raises what rename raises."""
        return self._rename(old, new, keep_replaced=True)

    def mkdir(self, path: str) -> FileStat:
        """Raises FsReadOnly, AlreadyExists, InvalidName, NameTooLong, NoSpace, NotFound."""
        d, parent_cluster, name = self._new_slot(path)
        (c,) = self.fat.allocate(1)
        try:
            body = bytearray(self.vol.geo.cluster_size)
            dots = dirmod.dot_entries(c, 0 if parent_cluster == self.root_cluster else parent_cluster,
                                      time.time_ns())
            body[: len(dots)] = dots
            self.vol.write_clusters(c, body)
            self.fat.flush()
        except BaseException:
            self.fat.free_chain([c])
            raise
        self._fsinfo_dirty = True
        self._dirs.pop(c, None)
        try:
            placed = self._place(d, name, layout.ATTR_DIRECTORY, c)
        except BaseException:  # e.g. a full FAT12/16 root: give the cluster back
            self.fat.free_chain([c])
            self.fat.flush()
            raise
        return self._stat(placed)

    def rmdir(self, path: str) -> None:
        """Raises FsReadOnly, NotFound, NotADirectory, DirectoryNotEmpty, InvalidOperation."""
        self._check_writable()
        parent, e = self._lookup(path)
        if e is None:
            raise InvalidOperation("cannot remove the root directory", device=self.vol.name)
        if not e.is_dir:
            raise NotADirectory(f"{path}: not a directory", device=self.vol.name)
        sub, _ = self._dir_at(path)
        if not sub.is_empty():
            raise DirectoryNotEmpty(f"{path}: directory not empty", device=self.vol.name)
        parent.remove(e)
        self.fat.free_chain(sub.chain)
        self.fat.flush()
        self._dirs.pop(e.cluster, None)
        self._fsinfo_dirty = True

    def rename(self, old: str, new: str) -> None:
        """POSIX rename. Raises FsReadOnly, NotFound, InvalidName, NameTooLong, IsADirectory,
        NotADirectory, DirectoryNotEmpty, InvalidOperation (a directory into itself), NoSpace."""
        self._rename(old, new)

    def _rename(self, old: str, new: str, *, keep_replaced: bool = False) -> str | None:
        self._check_writable()
        po, eo = self._lookup(old)
        if eo is None:
            raise InvalidOperation("cannot rename the root directory", device=self.vol.name)
        new_parent_path, name = split_path(new)
        if not name:
            raise InvalidOperation("cannot replace the root directory", device=self.vol.name)
        name = dirmod.strip_trailing_dots(name)
        dirmod.check_long_name(name)
        pn, pn_cluster = self._dir_at(new_parent_path)
        if eo.is_dir:
            # Moving a directory below itself would detach a loop from the tree.
            probe, seen = new_parent_path, set()
            while probe != "/":
                _, pe = self._lookup(probe)
                if pe is not None and pe.cluster == eo.cluster:
                    raise InvalidOperation(f"cannot move {old} into itself ({new})", device=self.vol.name)
                if probe in seen:
                    break
                seen.add(probe)
                probe = split_path(probe)[0]
        en = pn.find(name)
        victim: list[int] = []
        private = None
        if en is not None and pn is po and en.slot == eo.slot:
            if en.name == name:
                return None  # rename onto itself
            en = None  # a change of case only: re-place the entry under the new spelling
        if en is not None:
            if en.is_dir and not eo.is_dir:
                raise IsADirectory(f"{new}: is a directory", device=self.vol.name)
            if eo.is_dir and not en.is_dir:
                raise NotADirectory(f"{new}: not a directory", device=self.vol.name)
            if en.is_dir:
                sub = self._dir(en.cluster, new)
                if not sub.is_empty():
                    raise DirectoryNotEmpty(f"{new}: directory not empty", device=self.vol.name)
                victim = list(sub.chain)
            elif keep_replaced:
                private = self._orphans.adopt(en)
            else:
                victim = self.fat.chain(en.cluster, owner=new)
        # Same directory: the three entry changes are written together (one sector write
        # when they share a sector, so the rename is atomic there).
        with pn.one_write() if pn is po else contextlib.nullcontext():
            if en is not None:
                pn.remove(en)
                self._dirs.pop(en.cluster, None)
                self._chains.pop(en.cluster, None)
            self._place(pn, name, eo.attr, eo.cluster, template=eo)
            po.remove(eo)  # slots never move, so eo still names the old entry's slots
        if eo.is_dir and po is not pn:
            sub = self._dir(eo.cluster, new)
            if len(sub.raw) >= 64 and sub.raw[32:43] == b"..         ":
                parent_c = 0 if pn_cluster == self.root_cluster else pn_cluster
                sub.raw[32 + 20 : 32 + 22] = (parent_c >> 16).to_bytes(2, "little")
                sub.raw[32 + 26 : 32 + 28] = (parent_c & 0xFFFF).to_bytes(2, "little")
                sub.write_slot(1)
        if victim:
            self.fat.free_chain(victim)
            self.fat.flush()
            self._fsinfo_dirty = True
        return private

    def set_mtime(self, path: str, mtime_ns: int) -> None:
        """Raises FsReadOnly, NotFound."""
        self._check_writable()
        parent, e = self._lookup(path)
        if e is None:
            return  # the root has no directory entry to hold a time
        date, tm, _ = dirmod.ns_to_fat(mtime_ns)
        parent.update(replace(e, wrt_date=date, wrt_time=tm))

    # -- whole filesystem ---------------------------------------------------------------------
    def statfs(self) -> FsStats:
        g = self.vol.geo
        return FsStats(g.cluster_size, g.cluster_count, self.fat.free_count, g.cluster_count,
                       self.fat.free_count, 255, self.label)

    def flush(self) -> None:
        """Write the FAT and the FSInfo hints, then flush the device. Raises DeviceError."""
        if self.read_only or self.vol.dev.closed:
            return
        self.fat.flush()
        if self._fsinfo_dirty:
            self.vol.write_fsinfo(self.fat.free_count, self.fat.next_free)
            self._fsinfo_dirty = False
        self.vol.dev.flush()
