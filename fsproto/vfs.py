"""The small VFS interface every format implements, and everything above formats uses.

The FUSE adapter (:mod:`fsproto.mount.adapter`) and the offline CLI verbs only ever call a
:class:`Filesystem`; they never see bytes of an on-disk structure. Paths are absolute,
``/``-separated strings (``/PROFILE.EXEC``); a flat format has only the root directory.

File contents are the format's *view* of a file: for CMS that is the binary or text view the
filesystem was opened with (see the format's docs). Offsets and sizes are in that view.

Every method raises only :mod:`fsproto.errors` types; the docstrings list which.
"""

from __future__ import annotations

import abc
import posixpath
from dataclasses import dataclass, field
from types import TracebackType

from fsproto.errors import ExchangeNotSupported, FsReadOnly, InvalidName, NoSuchAttribute, NotPermitted, NotSupported


@dataclass(frozen=True)
class FileStat:
    """What ``stat`` reports for one file or directory."""

    name: str  # the last path component as the OS sees it ("PROFILE.EXEC"; "/" for the root)
    is_dir: bool
    size: int  # bytes in the filesystem's view (binary or text)
    mtime_ns: int  # modification time, ns since the epoch (UTC)
    alloc_bytes: int = 0  # bytes allocated on disk (data + metadata blocks), for st_blocks
    mode: int = 0o644  # permission bits the format offers (a mount then clears its fmask/dmask)
    nlink: int = 1
    # False when a write may leave another size than POSIX's (records padded to a length): the
    # mount then serves this file with direct I/O. Only read where Filesystem.exact_sizes is True.
    exact_size: bool = True
    extra: dict[str, str] = field(default_factory=dict, compare=False)  # format-specific (recfm...)


@dataclass(frozen=True)
class FsStats:
    """What ``statfs``/``df`` reports."""

    block_size: int
    total_blocks: int
    free_blocks: int
    total_files: int  # directory capacity; free_files + files in use
    free_files: int
    name_max: int  # longest name the format can hold (bytes)
    label: str = ""


class Filesystem(abc.ABC):
    """A mounted-or-offline view of one filesystem on one block device.

    Subclasses implement the abstract methods; optional ones raise NotSupported by default.
    Writers must keep the disk consistent if interrupted after any single device write.
    """

    read_only: bool = True

    # -- capabilities the mount reads (a format never knows about FUSE) -----------------------
    #: Every file reads back exactly what was written, with POSIX sizes (after a write:
    #: max(old size, end of the write); after truncate: the size asked), except files whose
    #: FileStat.exact_size is False. The mount then lets the kernel cache writes (writeback).
    exact_sizes: bool = False
    #: Extended attribute namespaces the format stores; the mount answers probes of any other
    #: (``security.capability`` before each write, ``system.posix_acl_access`` from ``ls -l``)
    #: with "no such attribute" without calling the format.
    xattr_namespaces: tuple[str, ...] = ("user",)
    #: The format implements :meth:`orphan` and :meth:`rename_orphaning`: a file deleted or
    #: replaced while open stays readable and writable until its last close.
    supports_orphans: bool = False

    # -- lookups ------------------------------------------------------------------------------
    @abc.abstractmethod
    def stat(self, path: str) -> FileStat:
        """Stat *path*. Raises NotFound, InvalidName, FormatError."""

    @abc.abstractmethod
    def listdir(self, path: str = "/") -> list[FileStat]:
        """Every entry of directory *path*, in the format's directory order.

        Raises NotFound, NotADirectory, FormatError.
        """

    # -- data -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def read(self, path: str, offset: int, size: int) -> bytes:
        """Up to *size* bytes at *offset* (short only at end of file).

        Raises NotFound, IsADirectory, FormatError.
        """

    def readinto(self, path: str, offset: int, buf: bytearray | memoryview) -> int:
        """:meth:`read` of up to ``len(buf)`` bytes into *buf*; returns the count (short only at
        end of file). Optional: this default copies a :meth:`read`; a format that can read in
        place overrides it, so a copy loop reuses one buffer instead of allocating per call.

        Raises NotFound, IsADirectory, FormatError.
        """
        data = self.read(path, offset, len(buf))
        memoryview(buf)[: len(data)] = data
        return len(data)

    def write(self, path: str, offset: int, data: bytes) -> int:
        """Write *data* at *offset*, extending the file (gaps read as zeros); returns len(data).

        Raises FsReadOnly, NotFound, NoSpace, FileTooBig, InvalidOperation, FormatError.
        """
        raise FsReadOnly("filesystem is read-only")

    def truncate(self, path: str, size: int) -> None:
        """Shrink or extend *path* to *size* bytes (extension reads as zeros).

        Raises FsReadOnly, NotFound, NoSpace, FileTooBig, InvalidOperation.
        """
        raise FsReadOnly("filesystem is read-only")

    # -- namespace -------------------------------------------------------------------------------
    def create(self, path: str) -> FileStat:
        """Create an empty file. Raises FsReadOnly, AlreadyExists, InvalidName, NameTooLong, NoSpace."""
        raise FsReadOnly("filesystem is read-only")

    def unlink(self, path: str) -> None:
        """Delete a file. Raises FsReadOnly, NotFound, IsADirectory."""
        raise FsReadOnly("filesystem is read-only")

    def rename(self, old: str, new: str) -> None:
        """Rename *old* to *new*, replacing *new* if it exists (POSIX rename).

        Raises FsReadOnly, NotFound, InvalidName, NameTooLong.
        """
        raise FsReadOnly("filesystem is read-only")

    def exchange(self, a: str, b: str) -> None:
        """Swap the files named *a* and *b* in one atomic step (``RENAME_EXCHANGE``).

        Raises ExchangeNotSupported where the format cannot do it atomically, FsReadOnly, NotFound.
        """
        raise ExchangeNotSupported("this format cannot exchange two names atomically")

    # -- open-file semantics (optional, see supports_orphans) ------------------------------------
    def orphan(self, path: str) -> str:
        """Remove *path*'s directory entry but keep its data: returns a private path under which
        stat/read/write/truncate keep working (never listed, no user can spell it), and
        ``unlink(private)`` frees the blocks. The orphan lives only in memory: after a crash its
        blocks are leaked (allocated, unreferenced), which the format's fsck repairs.

        Raises NotSupported, FsReadOnly, NotFound, IsADirectory.
        """
        raise NotSupported("this format has no orphans")

    def rename_orphaning(self, old: str, new: str) -> str | None:
        """:meth:`rename`, except that a file it replaces becomes an orphan (see :meth:`orphan`)
        instead of being freed; returns the orphan's private path, None when nothing was replaced.

        Raises what rename raises, NotSupported.
        """
        raise NotSupported("this format has no orphans")

    def mkdir(self, path: str) -> FileStat:
        """Raises NotPermitted on a flat format (mkdir(2): EPERM), FsReadOnly, AlreadyExists..."""
        raise NotPermitted("this format has no subdirectories")

    def rmdir(self, path: str) -> None:
        raise NotPermitted("this format has no subdirectories")

    def set_mtime(self, path: str, mtime_ns: int) -> None:
        """Set the modification time. Raises FsReadOnly, NotFound."""
        raise FsReadOnly("filesystem is read-only")

    # -- extended attributes ---------------------------------------------------------------------
    def listxattr(self, path: str) -> list[str]:
        return []

    def getxattr(self, path: str, name: str) -> bytes:
        """Raises NoSuchAttribute, NotFound."""
        raise NoSuchAttribute(f"no attribute {name}")

    def setxattr(self, path: str, name: str, value: bytes) -> None:
        """Raises NotSupported, InvalidOperation (value not allowed now), FsReadOnly."""
        raise NotSupported(f"attribute {name} cannot be set")

    # -- whole filesystem --------------------------------------------------------------------------
    @abc.abstractmethod
    def statfs(self) -> FsStats: ...

    def flush(self) -> None:
        """Make every completed operation durable on the device."""

    def close(self) -> None:
        """Flush and release; idempotent. Does not close the block device it was given."""
        self.flush()

    def __enter__(self) -> "Filesystem":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers for subclasses and callers ------------------------------------------------------
    def exists(self, path: str) -> bool:
        from fsproto.errors import NotFound

        try:
            self.stat(path)
        except NotFound:
            return False
        return True


def split_path(path: str) -> tuple[str, str]:
    """``/A/B.C`` -> (``/A``, ``B.C``); raises InvalidName for a relative or empty path."""
    if not path.startswith("/"):
        raise InvalidName(f"path {path!r} is not absolute")
    norm = posixpath.normpath(path)
    if norm == "/" or norm == "//":
        return "/", ""
    parent, name = posixpath.split(norm)
    return parent, name
