"""Actions behind the offline filesystem verbs (ls, cat, get, put, rm, mv, dump, fsck, mkfs).

Generic over formats: everything goes through :mod:`fsproto.formats` and
:class:`fsproto.vfs.Filesystem`; nothing here knows an on-disk layout.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from fsproto import formats
from fsproto.blockdev.open import is_path_spec
from fsproto.errors import FsprotoError, GeometryError, HostFileError, IsADirectory, NotFound, UsageError
from fsproto.formats.base import FsckReport, Progress
from fsproto.rawdev import BlockDevice, ImageFile, open_device
from fsproto.vfs import FileStat, Filesystem

COPY_CHUNK = 1 << 20  # 1 MiB: large enough to amortise per-call costs, small enough for bounded memory

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``100M`` -> 104857600; accepts K/M/G/T (binary) with an optional ``i``/``B``."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise UsageError(f"bad size {text!r} (expected e.g. 4096, 64K, 100M, 2G)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]


@dataclass
class Session:
    """An opened device + format + filesystem, closed together."""

    dev: BlockDevice
    fmt: formats.Format
    fs: Filesystem


@contextlib.contextmanager
def open_fs(
    device: str, *, fmt_name: str = "auto", writable: bool = False, force: bool = False, **options: Any
) -> Iterator[Session]:
    """Open *device*, detect or pick its format, and open the filesystem on it."""
    dev = open_device(device, writable=writable, force=force)
    try:
        fmt = formats.detect(dev, fmt_name)
        fs = _open_with_options(fmt, dev, options)
        try:
            yield Session(dev, fmt, fs)
        finally:
            fs.close()
    finally:
        dev.close()


def _open_with_options(fmt: formats.Format, dev: BlockDevice, options: dict[str, Any]) -> Filesystem:
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return fmt.open(dev, **given)
    except TypeError as e:
        # A format that does not take an option (e.g. --text on a format without text views).
        raise UsageError(f"format {fmt.name} does not accept these options ({', '.join(given)}): {e}") from None


def list_entries(fs: Filesystem, path: str = "/") -> list[FileStat]:
    return fs.listdir(path)


def _stream(fs: Filesystem, path: str, size: int, sink: Callable[[bytes], Any],
            on_bytes: Callable[[int], None] | None = None) -> int:
    """Read *path* in COPY_CHUNK pieces into *sink*; returns the bytes copied.

    *on_bytes* is called with the bytes copied so far after each piece. A format that reads in
    place (``readinto`` overridden) fills one reused buffer: no megabyte allocated per piece,
    which is what made a copy-out slower than mcopy (fresh mmap'd pages faulted in each time).
    """
    offset = 0
    if type(fs).readinto is not Filesystem.readinto:
        buf = memoryview(bytearray(min(COPY_CHUNK, max(size, 1))))
        while offset < size:
            n = fs.readinto(path, offset, buf[: min(len(buf), size - offset)])
            if not n:
                break
            sink(buf[:n])
            offset += n
            if on_bytes:
                on_bytes(offset)
        return offset
    while offset < size:
        chunk = fs.read(path, offset, min(COPY_CHUNK, size - offset))
        if not chunk:
            break
        sink(chunk)
        offset += len(chunk)
        if on_bytes:
            on_bytes(offset)
    return offset


def cat_file(fs: Filesystem, path: str, out: Any) -> int:
    """Write the file's bytes to the binary stream *out* (flushed); returns bytes written.

    Raises IsADirectory for a directory, HostFileError when *out* refuses the bytes (a full disk, /dev/full); a closed pipe
    stays a BrokenPipeError, which the CLI frame ends quietly.
    """
    def sink(chunk: bytes) -> None:
        with _stdout_op():
            out.write(chunk)

    st = fs.stat(path)
    if st.is_dir:  # a directory's size is 0 on FAT: without this, cat printed nothing, status 0
        raise IsADirectory(f"{path}: is a directory")
    n = _stream(fs, path, st.size, sink)
    with _stdout_op():
        out.flush()
    return n


@contextlib.contextmanager
def _stdout_op() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        if isinstance(e, FsprotoError):
            raise
        raise HostFileError(f"standard output: cannot write: {e.strerror or e}", errno=e.errno) from e


def _walk(fs: Filesystem, path: str, rel: Path, out: list[tuple[str, Path, FileStat]], depth: int = 0) -> None:
    """Collect (path, relative host path, stat) for *path*, descending into directories."""
    if depth > 256:  # a directory that (through corruption) contains itself must not recurse forever
        raise UsageError(f"{path}: directory tree deeper than 256 levels; run fsck")
    st = fs.stat(path)
    out.append((path, rel, st))
    if st.is_dir:
        for child in fs.listdir(path):
            out_name = _safe_host_name(child.name, path)
            _walk(fs, _join(path, child.name), rel / out_name, out, depth + 1)


def _safe_host_name(name: str, parent: str) -> str:
    """Names come from a possibly hostile image: never let one escape the output directory."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise UsageError(f"{parent}: refusing to extract an entry named {name!r}")
    return name


def get_files(
    fs: Filesystem, paths: list[str], dest: Path, *, progress: Progress | None = None
) -> list[Path]:
    """Extract *paths* (everything when empty) into directory *dest*; directories recursively.

    Each file is written to a ``.part`` name and renamed when complete, so an interrupted
    extraction never leaves a truncated file under the real name.
    """
    items: list[tuple[str, Path, FileStat]] = []
    for p in paths or ["/"]:
        if p == "/":  # the root has no name of its own: its entries go straight into dest
            for child in fs.listdir("/"):
                _walk(fs, _join("/", child.name), Path(_safe_host_name(child.name, "/")), items)
            continue
        st = fs.stat(p)
        _walk(fs, p, Path(_safe_host_name(st.name, p)), items)
    total = sum(st.size for _, _, st in items if not st.is_dir)
    done = 0
    with _host_op("create directory", dest):
        dest.mkdir(parents=True, exist_ok=True)
    written = []
    for index, (path, rel, st) in enumerate(items):
        target = dest / rel
        if st.is_dir:
            with _host_op("create directory", target):
                target.mkdir(parents=True, exist_ok=True)
            continue
        with _host_op("create directory", target.parent):
            target.parent.mkdir(parents=True, exist_ok=True)
        # A short temporary name: the image's name plus ".part" can pass the host's 255-byte
        # limit even when the name itself fits (a FAT long name holds 255 characters).
        tmp = target.with_name(f".fsproto-get-{os.getpid()}-{index}.part")
        try:
            with _host_op("write", target), open(tmp, "wb") as out:
                done += _stream(fs, path, st.size, out.write,
                                (lambda n, base=done: progress(base + n, total)) if progress else None)
            with _host_op("create", target):
                os.replace(tmp, target)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # only still there when the copy or the rename failed
        if st.mtime_ns:
            with _host_op("set the time of", target):
                os.utime(target, ns=(st.mtime_ns, st.mtime_ns))
        written.append(target)
    for path, rel, st in reversed(items):  # directory times last: extracting files changed them
        if st.is_dir and st.mtime_ns:
            with _host_op("set the time of", dest / rel):
                os.utime(dest / rel, ns=(st.mtime_ns, st.mtime_ns))
    return written


@contextlib.contextmanager
def _host_op(what: str, path: Path) -> Iterator[None]:
    """Turn an OSError on a host path into a HostFileError that names the path (one CLI line)."""
    try:
        yield
    except OSError as e:
        if isinstance(e, FsprotoError):  # a typed error from the image side passes through
            raise
        raise HostFileError(f"{path}: cannot {what}: {e.strerror or e}", errno=e.errno) from e


def put_files(
    fs: Filesystem,
    sources: list[Path],
    *,
    names: list[str] | None = None,
    xattrs: dict[str, bytes] | None = None,
    replace: bool = False,
    progress: Progress | None = None,
) -> list[str]:
    """Copy host files into the filesystem root; returns the paths written."""
    names = names or [src.name for src in sources]
    if len(names) != len(sources):
        raise UsageError("--as needs exactly one source file")
    for src in sources:
        if not src.is_file():
            raise UsageError(f"{src}: not a regular file")
    total = sum(src.stat().st_size for src in sources)
    done = 0
    out = []
    for src, name in zip(sources, names):
        path = _join("/", name)
        if fs.exists(path):
            if not replace:
                from fsproto.errors import AlreadyExists

                raise AlreadyExists(f"{path} exists (pass --replace to overwrite it)")
            fs.unlink(path)
        fs.create(path)
        for key, value in (xattrs or {}).items():
            fs.setxattr(path, key, value)
        offset = 0
        with open(src, "rb") as f:
            while chunk := f.read(COPY_CHUNK):
                fs.write(path, offset, chunk)
                offset += len(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        mtime = src.stat().st_mtime_ns
        fs.set_mtime(path, mtime)
        out.append(fs.stat(path).name)
    fs.flush()
    return out


def remove_files(fs: Filesystem, paths: list[str]) -> None:
    for path in paths:
        fs.unlink(path)
    fs.flush()


def rename_file(fs: Filesystem, old: str, new: str) -> None:
    fs.rename(old, new)
    fs.flush()


def make_filesystem(
    device: str,
    *,
    fmt_name: str,
    size: int | None,
    force: bool,
    progress: Progress | None = None,
    **options: Any,
) -> None:
    """Create (when *size* is given and the image does not exist) and format *device*."""
    if fmt_name == "auto":
        raise UsageError("mkfs needs --format")
    fmt = formats.get(fmt_name)
    if size is not None and not is_path_spec(device):
        raise UsageError(f"{device} is not a file: --size creates image files only; omit it")
    if size is not None and not os.path.exists(device):
        if size % 512:
            raise GeometryError(f"size {size} is not a multiple of 512", device=device)
        ImageFile.create(device, size).close()
    elif size is not None and os.path.isfile(device) and os.path.getsize(device) != size:
        raise UsageError(f"{device} exists with a different size; remove it or omit --size")
    dev = open_device(device, writable=True, force=force)
    try:
        given = {k: v for k, v in options.items() if v is not None}
        fmt.mkfs(dev, progress=progress, **given)
        dev.flush()
    finally:
        dev.close()


def check_filesystem(
    device: str, *, fmt_name: str, repair: bool, force: bool, progress: Progress | None = None
) -> FsckReport:
    dev = open_device(device, writable=repair, force=force)
    try:
        fmt = formats.detect(dev, fmt_name)
        return fmt.fsck(dev, repair=repair, progress=progress)
    finally:
        dev.close()


def dump_metadata(device: str, *, fmt_name: str, path: str | None, force: bool = False) -> str:
    dev = open_device(device, force=force)
    try:
        fmt = formats.detect(dev, fmt_name)
        return fmt.dump(dev, path)
    finally:
        dev.close()


def dump_metadata_data(device: str, *, fmt_name: str, path: str | None, force: bool = False) -> dict[str, Any]:
    """The same decode as :func:`dump_metadata`, as data (``dump --json``)."""
    dev = open_device(device, force=force)
    try:
        fmt = formats.detect(dev, fmt_name)
        return fmt.dump_data(dev, path)
    finally:
        dev.close()


def _join(directory: str, name: str) -> str:
    if name.startswith("/"):
        return name
    return directory.rstrip("/") + "/" + name


def as_path(name: str) -> str:
    """A user-typed file name (``PROFILE.EXEC`` or ``/PROFILE.EXEC``) as an absolute path."""
    if not name:
        raise NotFound("empty file name")
    return _join("/", name)


__all__ = [
    "FsprotoError",
    "Session",
    "as_path",
    "cat_file",
    "check_filesystem",
    "dump_metadata",
    "dump_metadata_data",
    "get_files",
    "list_entries",
    "make_filesystem",
    "open_fs",
    "parse_size",
    "put_files",
    "remove_files",
    "rename_file",
]
