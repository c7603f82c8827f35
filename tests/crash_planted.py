"""A test-only format with a planted ordering bug: TinyFS that commits the directory entry
*before* the file data it points at (the data writes are held back until after the entry).

A power cut between the two leaves an entry whose size covers blocks that still hold old
bytes: fsck cannot tell (TinyFS has no checksums), so only the workload's assertions catch it.
"""

from __future__ import annotations

from typing import Any

from fsproto.formats.tutorial import TinyFilesystem, TinyFormat


class DirectoryFirstFilesystem(TinyFilesystem):
    def __init__(self, dev: Any) -> None:
        super().__init__(dev)
        self._held: list[tuple[int, int, bytes]] = []

    def _write_bytes(self, start: int, offset: int, data: bytes) -> None:
        self._held.append((start, offset, data))  # the bug: data waits for the entry

    def _save(self, i: int) -> None:
        super()._save(i)
        held, self._held = self._held, []
        for start, offset, data in held:
            TinyFilesystem._write_bytes(self, start, offset, data)


class DirectoryFirstFormat(TinyFormat):
    name = "dirfirst"
    description = "TinyFS with its directory written before its data (a planted crash bug)"

    def open(self, dev: Any, **options: Any) -> DirectoryFirstFilesystem:
        return DirectoryFirstFilesystem(dev)


FORMAT = DirectoryFirstFormat()


class CrashyFormat(TinyFormat):
    """A format whose parser has a planted crash: an untyped IndexError for images starting DE AD."""

    name = "crashy"
    description = "a parser with a planted untyped exception (for the fuzz test)"

    def probe(self, dev: Any) -> bool:
        return True

    def open(self, dev: Any, **options: Any) -> Any:
        head = dev.read(0, 1)
        if head[0] == 0xDE and head[1] == 0xAD:
            return [][head[2]]  # the bug: IndexError, not an fsproto error
        return super().open(dev)


CRASHY = CrashyFormat()
