"""What a format plugin provides: probe, open, mkfs, fsck, dump, block_map.

A format is one object (an instance of a :class:`Format` subclass) registered under the
``fsproto.formats`` entry-point group; see :mod:`fsproto.formats`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from fsproto.errors import EXIT_FIXED, EXIT_OK, EXIT_UNCORRECTED, NotSupported
from fsproto.rawdev import BlockDevice
from fsproto.vfs import Filesystem

if TYPE_CHECKING:
    from fsproto.formats.blockmap import BlockMap
    from fsproto.formats.outline import Node

# progress(done, total): long operations report how far they are; the CLI draws a bar.
Progress = Callable[[int, int], None]


@dataclass
class Problem:
    """One fsck finding."""

    code: str  # short stable identifier, e.g. "alloc-map-leak"
    message: str  # one line, naming blocks/slots
    severity: str = "error"  # "error" (corruption) or "notice" (harmless, e.g. a stale counter)
    fixed: bool = False

    def __str__(self) -> str:
        state = " [fixed]" if self.fixed else ""
        return f"{self.severity}: {self.code}: {self.message}{state}"


@dataclass
class FsckReport:
    """The result of a check; ``exit_status`` follows e2fsck's bitmask."""

    device: str
    problems: list[Problem] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def add(self, code: str, message: str, *, severity: str = "error") -> Problem:
        p = Problem(code, message, severity)
        self.problems.append(p)
        return p

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def clean(self) -> bool:
        """True when no error (notices allowed) is left unfixed."""
        return not any(not p.fixed for p in self.errors)

    @property
    def exit_status(self) -> int:
        status = EXIT_OK
        if any(p.fixed for p in self.problems):
            status |= EXIT_FIXED
        if any(not p.fixed for p in self.errors):
            status |= EXIT_UNCORRECTED
        return status


class Format(abc.ABC):
    """A registered on-disk format."""

    name: str = ""
    description: str = ""

    @abc.abstractmethod
    def probe(self, dev: BlockDevice) -> bool:
        """Cheap check: does *dev* look like this format? Never raises for foreign data."""

    @abc.abstractmethod
    def open(self, dev: BlockDevice, **options: Any) -> Filesystem:
        """Open the filesystem on *dev* (read-write iff the device is writable).

        Raises UnknownFormat when it is not this format, FormatError when corrupt.
        """

    def mkfs(self, dev: BlockDevice, *, progress: Progress | None = None, **options: Any) -> None:
        raise NotSupported(f"{self.name}: mkfs is not implemented")

    def fsck(self, dev: BlockDevice, *, repair: bool = False, progress: Progress | None = None) -> FsckReport:
        raise NotSupported(f"{self.name}: fsck is not implemented")

    def dump(self, dev: BlockDevice, path: str | None = None) -> str:
        """Human-readable decode of the metadata (of one file when *path* is given)."""
        raise NotSupported(f"{self.name}: dump is not implemented")

    def dump_data(self, dev: BlockDevice, path: str | None = None) -> dict[str, Any]:
        """The decode :meth:`dump` prints, as JSON-ready data (str, int, bool, None, lists, dicts;
        bytes as hex). Optional: ``dump --json`` says so when a format has none."""
        raise NotSupported(f"{self.name}: dump --json is not implemented")

    def block_map(self, dev: BlockDevice) -> "BlockMap":
        """Which blocks belong to what (:mod:`fsproto.formats.blockmap`), from fsck's walk, with its
        findings; ``fsproto map`` and ``fsproto explore`` draw it. Never writes."""
        raise NotSupported(f"{self.name}: block_map is not implemented")

    def outline(self, dev: BlockDevice, bmap: "BlockMap") -> "Node":
        """The structures as a tree for ``fsproto explore`` (:mod:`fsproto.formats.outline`); by
        default derived from *bmap*: roles -> extents -> blocks with their construct structs."""
        from fsproto.formats.outline import generic_outline

        return generic_outline(bmap)
