"""The inode table of a FUSE mount over a path-based :class:`fsproto.vfs.Filesystem`.

Formats address files by path; the kernel addresses them by inode number and keeps a lookup
count per inode (``forget`` drops it). This table is the only place where the two meet.

Rules it keeps (see libfuse ``fuse_lowlevel.h``, ``forget``):

* An inode number is never reused while the process lives (a 64-bit counter), so a file
  deleted and re-created under the same name gets a new number and the kernel can never
  serve the old file's cached pages for the new one.
* An inode lives while the kernel holds lookups on it or the adapter holds open handles;
  ``forget`` and ``release`` drop those, and the entry goes when both reach zero.
* ``unlink`` (or being replaced by ``rename``) detaches the path from the inode: the number
  stays valid for the kernel until forgotten, but no longer names a file (ESTALE).
* ``rename`` moves the path of the inode and, for a directory, of everything below it.

* ``orphan`` gives an open inode whose file was deleted or replaced the private path the
  format keeps it under (see :meth:`fsproto.vfs.Filesystem.orphan`); its number stays.

Limits: on a format without orphans, handles on a file that was deleted or replaced fail with
ESTALE instead of reading the old data.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import pyfuse3

ROOT_INODE: int = pyfuse3.ROOT_INODE


class StaleInode(Exception):
    """The inode no longer names a file (deleted or replaced); maps to ESTALE."""

    errno = errno.ESTALE


@dataclass
class _Entry:
    path: str | None  # None once deleted or replaced
    lookups: int = 0
    opens: int = 0
    orphan: bool = False  # path is the format's private path of a deleted, still open file


class InodeTable:
    """Inode number <-> absolute path, with kernel lookup counts and open counts."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {ROOT_INODE: _Entry("/", lookups=1)}
        self._by_path: dict[str, int] = {"/": ROOT_INODE}
        self._next = ROOT_INODE + 1

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, inode: int) -> bool:
        return inode in self._entries

    # -- queries ----------------------------------------------------------------------------
    def path(self, inode: int) -> str:
        """The current path of *inode*. Raises StaleInode when it names no file any more."""
        entry = self._entries.get(inode)
        if entry is None or entry.path is None:
            raise StaleInode(f"inode {inode} is stale")
        return entry.path

    def inode_of(self, path: str) -> int | None:
        """The inode currently naming *path*, if the kernel knows one."""
        return self._by_path.get(path)

    def lookups(self, inode: int) -> int:
        entry = self._entries.get(inode)
        return entry.lookups if entry else 0

    def opens(self, inode: int) -> int:
        entry = self._entries.get(inode)
        return entry.opens if entry else 0

    def is_orphan(self, inode: int) -> bool:
        entry = self._entries.get(inode)
        return bool(entry and entry.orphan)

    # -- the kernel's reference counts ----------------------------------------------------
    def ensure(self, path: str) -> int:
        """The inode for *path*, allocating one (without a lookup reference) if needed."""
        inode = self._by_path.get(path)
        if inode is None:
            inode = self._next
            self._next += 1
            self._entries[inode] = _Entry(path)
            self._by_path[path] = inode
        return inode

    def lookup(self, path: str) -> int:
        """The inode for *path* with one more kernel lookup reference (lookup/create/mkdir)."""
        inode = self.ensure(path)
        self._entries[inode].lookups += 1
        return inode

    def add_lookup(self, inode: int) -> None:
        """One more kernel reference on an already known inode (a readdirplus entry)."""
        self._entries[inode].lookups += 1

    def drop_unreferenced(self, inode: int) -> None:
        """Forget *inode* if nothing references it (an entry readdir allocated but did not send)."""
        self._maybe_drop(inode)

    def forget(self, inode: int, nlookup: int) -> None:
        """The kernel dropped *nlookup* references; the root is never dropped."""
        entry = self._entries.get(inode)
        if entry is None or inode == ROOT_INODE:
            return
        entry.lookups = max(0, entry.lookups - nlookup)
        self._maybe_drop(inode)

    def open(self, inode: int) -> None:
        """An open handle now refers to *inode* (keeps it alive past ``forget``)."""
        self._entries[inode].opens += 1

    def release(self, inode: int) -> None:
        entry = self._entries.get(inode)
        if entry is None:
            return
        entry.opens = max(0, entry.opens - 1)
        self._maybe_drop(inode)

    # -- namespace changes ---------------------------------------------------------------------
    def detach(self, path: str) -> None:
        """*path* was deleted: its inode (if any) no longer names a file."""
        inode = self._by_path.pop(path, None)
        if inode is not None:
            self._entries[inode].path = None
            self._maybe_drop(inode)

    def orphan(self, inode: int, private: str) -> None:
        """*inode*'s file was deleted while open and lives on under the format's *private* path."""
        entry = self._entries[inode]
        if entry.path is not None and self._by_path.get(entry.path) == inode:
            del self._by_path[entry.path]
        entry.path, entry.orphan = private, True

    def bury(self, inode: int) -> None:
        """The orphan's last handle closed and its data was freed: the number names nothing now."""
        entry = self._entries.get(inode)
        if entry is not None:
            entry.path, entry.orphan = None, False
            self._maybe_drop(inode)

    def rename(self, old: str, new: str) -> None:
        """*old* is now *new* (replacing whatever *new* was); moves descendants too."""
        moving = self._by_path.get(old)
        target = self._by_path.get(new)
        if target is not None and target != moving:
            self.detach(new)
        if old == new or old == "/":
            return
        # A directory rename moves every known path below it; collect first, then rewrite.
        prefix = old + "/"
        below = [p for p in self._by_path if p.startswith(prefix)]
        for p in ([old] if moving is not None else []) + below:
            inode = self._by_path.pop(p)
            new_path = new + p[len(old):]
            self._entries[inode].path = new_path
            self._by_path[new_path] = inode

    def exchange(self, a: str, b: str) -> None:
        """The files at *a* and *b* swapped names (RENAME_EXCHANGE); descendants move too."""
        parking = "\0exchange"  # no kernel name contains NUL: never a real path
        self.rename(a, parking)
        self.rename(b, a)
        self.rename(parking, b)

    def _maybe_drop(self, inode: int) -> None:
        entry = self._entries.get(inode)
        if entry is None or inode == ROOT_INODE or entry.lookups or entry.opens or entry.orphan:
            return
        del self._entries[inode]
        if entry.path is not None and self._by_path.get(entry.path) == inode:
            del self._by_path[entry.path]
