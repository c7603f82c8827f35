"""Orphans: files deleted (or replaced by a rename) while a mount still has them open.

The directory entry is gone from the disk but the cluster chain stays allocated in the FAT;
the entry lives on here, in memory, under a private path (:meth:`fsproto.vfs.Filesystem.orphan`)
so reads, writes and truncates keep working through fs.py's ordinary code: :class:`OrphanDir`
stands in for the parent directory and keeps entry updates in memory. Releasing the orphan frees
its chain. After a crash with an orphan open its clusters are allocated but unreferenced (lost
clusters): ``fsck.vfat`` and ``fsproto fsck --repair`` free them; no other file is touched.

The private path is ``/\\0orphan.N``: no kernel name contains NUL, so no user can spell it.
"""

from __future__ import annotations

from dataclasses import replace

from fsproto.formats.fat.directory import DirEntry

PREFIX = "/\0orphan."


class OrphanDir:
    """The in-memory "directory" of orphans; entries are told apart by a negative slot."""

    def __init__(self) -> None:
        self.entries: dict[int, DirEntry] = {}
        self._next = 1

    def lookup(self, path: str) -> DirEntry | None:
        if not path.startswith(PREFIX) or not path[len(PREFIX):].isdigit():
            return None
        return self.entries.get(-int(path[len(PREFIX):]))

    def adopt(self, entry: DirEntry) -> str:
        n = self._next
        self._next += 1
        self.entries[-n] = replace(entry, slot=-n, first_slot=-n)
        return f"{PREFIX}{n}"

    # What fs.py calls on a parent directory while it writes or frees a file:
    def update(self, entry: DirEntry) -> None:
        self.entries[entry.slot] = entry

    def remove(self, entry: DirEntry) -> None:
        self.entries.pop(entry.slot, None)
