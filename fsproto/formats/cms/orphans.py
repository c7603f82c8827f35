"""Orphans: files deleted (or replaced by a rename) while a mount still has them open.

The directory no longer holds the file's FST, but its blocks stay allocated (in the map on disk)
and the FST lives on here, in memory, so reads and writes through the private path keep working
(:meth:`fsproto.vfs.Filesystem.orphan`). Data changes of an orphan follow files.py's order up to
the commit, which for an orphan only updates the in-memory FST: nothing on disk refers to its
blocks. Releasing the orphan clears their bits, then ADTUSED.

After a crash with an orphan open, its blocks are allocated but unreferenced: ``fsck`` reports
them as leaked and ``--repair`` frees them; every file that was in the directory is intact.

The private path is ``/\\0orphan.N``: no kernel name contains NUL, so no user can spell it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fsproto.formats.cms.directory import Fst

if TYPE_CHECKING:
    from fsproto.formats.cms.fs import CmsFilesystem

PREFIX = "/\0orphan."
Key = tuple[bytes, bytes]


class Orphans:
    """The open filesystem's orphans, by private key ``(b"\\0orphan", b"N")``."""

    def __init__(self) -> None:
        self.fsts: dict[Key, Fst] = {}
        self._next = 1

    def key_of(self, path: str) -> Key | None:
        """The key of a private path that names a live orphan; None for any other path."""
        if not path.startswith(PREFIX):
            return None
        key = (b"\0orphan", path[len(PREFIX):].encode())
        return key if key in self.fsts else None

    def adopt(self, fst: Fst) -> tuple[Key, str]:
        """Keep *fst* (a copy, already gone from the directory); returns its key and private path."""
        n = self._next
        self._next += 1
        key = (b"\0orphan", str(n).encode())
        self.fsts[key] = fst
        return key, f"{PREFIX}{n}"


def detach(fs: "CmsFilesystem", key: Key, slot: int, *, rename_to: Key | None = None,
           source_slot: int | None = None) -> str:
    """Make the file at *slot* an orphan: its FST leaves the directory, its blocks stay.

    With *rename_to* the orphan is the target of a rename of *source_slot* to its name, done as
    one ordinary rename whose replaced blocks are simply not freed.
    """
    fs.filemap(key)  # walk the tree while the FST still says where it is
    fst = Fst.from_bytes(fs.dir.slots[slot].to_bytes())
    if rename_to is None:
        fs.ns.delete(slot, [])
    else:
        assert source_slot is not None
        fs.ns.rename(source_slot, rename_to, [])
    okey, private = fs.orphans.adopt(fst)
    fs.move_cache(key, okey)
    return private


def release(fs: "CmsFilesystem", key: Key) -> None:
    """The last descriptor closed: free the orphan's data and pointer blocks, then ADTUSED."""
    fm = fs.filemap(key)
    blocks = [b for b in fm.tree.leaves if b] + fm.tree.pointer_blocks()
    del fs.orphans.fsts[key]
    fs.forget(key)
    for b in blocks:
        fs.amap.clear(b)
    fs.amap.write_dirty()
    fs.write_used()
