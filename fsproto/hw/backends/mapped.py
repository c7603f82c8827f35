"""MappedBackend: ``mmap`` of a path or of anonymous memory.

Paths: a regular file, ``/dev/mem`` (needs a size), a PCI BAR through sysfs
(``/sys/bus/pci/devices/BDF/resourceN``: the file size is the BAR size, offsets are relative to
the BAR start, hardware.md 2.4), ``/dev/uioN`` (map N is at offset N pages; size from sysfs).
Files are opened ``O_SYNC`` so that ``/dev/mem`` RAM windows are mapped uncached (2.3).

This module does no ownership checks: :func:`fsproto.hw.vocab.mmap` runs
:mod:`fsproto.hw.safety` first. Limits: block devices and character devices other than the
ones above are mapped as the kernel allows; a file truncated while mapped raises SIGBUS
(not preventable from user space).
"""

from __future__ import annotations

import errno
import mmap as _mmap
import os
import re
import stat

from fsproto.errors import AccessDenied, HardwareError, HardwareNotFound, RegionOutOfRange, UsageError
from fsproto.hw.backends.base import Backend

PAGE = _mmap.PAGESIZE


def lockdown_state() -> str | None:
    """The active kernel lockdown mode (``integrity``/``confidentiality``) or None."""
    try:
        with open("/sys/kernel/security/lockdown") as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"\[(\w+)\]", text)
    return None if m is None or m.group(1) == "none" else m.group(1)


def _denied_hint(path: str) -> str:
    mode = lockdown_state()
    hint = "run as root (CAP_SYS_RAWIO for /dev/mem, CAP_SYS_ADMIN for sysfs resources)"
    if mode:
        hint += f"; kernel lockdown is '{mode}', which forbids mapping device memory from user space"
    else:
        hint += "; if root already, kernel lockdown (Secure Boot) may forbid it"
    return hint


def os_error(e: OSError, path: str, doing: str) -> HardwareError:
    """Wrap an OSError from *doing* on *path* into the typed error saying what to do."""
    if e.errno == errno.ENOENT:
        if path == "/dev/mem":
            return HardwareNotFound(
                "no /dev/mem on this kernel (CONFIG_DEVMEM is off); map the BAR through "
                "/sys/bus/pci/devices/<BDF>/resourceN, uio or vfio instead",
                device=path,
            )
        return HardwareNotFound(f"{doing}: no such file or device", device=path)
    if e.errno in (errno.EPERM, errno.EACCES):
        return AccessDenied(f"{doing}: permission denied; {_denied_hint(path)}", device=path)
    if e.errno == errno.EINVAL and "/resource" in path:
        return HardwareError(
            f"{doing}: the kernel refused (EINVAL): the BAR is claimed by a driver "
            "(CONFIG_IO_STRICT_DEVMEM: unbind it first) or the window is outside the BAR",
            device=path,
        )
    if e.errno == errno.ENODEV:
        return HardwareError(f"{doing}: this file cannot be memory-mapped", device=path)
    return HardwareError(f"{doing}: {e.strerror}", device=path)


def _uio_size(path: str, index: int) -> int | None:
    name = os.path.basename(path)
    try:
        with open(f"/sys/class/uio/{name}/maps/map{index}/size") as f:
            return int(f.read().strip(), 0)
    except (OSError, ValueError):
        return None


class MappedBackend(Backend):
    """A shared mapping of *path* (or anonymous memory when *path* is None).

    ``offset`` is the byte offset in the file (for ``/dev/uioN``, use ``uio_map=N`` instead);
    ``size`` defaults to the rest of the file. The mapping starts at the page containing
    *offset*; :attr:`skew` is where *offset* lands inside it.

    Raises HardwareNotFound, AccessDenied, RegionOutOfRange (window past the end of the
    file/BAR), UsageError (no size for a device without one), HardwareError.
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        size: int | None = None,
        offset: int = 0,
        writable: bool = False,
        uio_map: int | None = None,
    ) -> None:
        self.name = path or "anonymous"
        self.writable = writable
        self._fd = -1
        self._map: _mmap.mmap | None = None
        self._view: memoryview | None = None
        if offset < 0 or (size is not None and size <= 0):
            raise UsageError(f"bad window offset {offset} size {size}", device=self.name)
        if path is None:
            if size is None:
                raise UsageError("anonymous memory needs a size", device=self.name)
            page_off, self.skew = 0, 0
            length = size
            try:
                self._map = _mmap.mmap(-1, length, flags=_mmap.MAP_SHARED | _mmap.MAP_ANONYMOUS)
            except OSError as e:
                raise os_error(e, self.name, f"mmap of {length} anonymous bytes") from e
        else:
            limit = self._limit(path, uio_map)
            if uio_map is not None:
                offset = uio_map * PAGE  # uio selects map N by the page offset (uio docs)
            if size is None:
                if limit is None:
                    raise UsageError("this device has no size; pass size=", device=path)
                size = limit - (0 if uio_map is not None else offset)
            if limit is not None and uio_map is None and offset + size > limit:
                raise RegionOutOfRange(
                    f"window {offset:#x}+{size:#x} is past the end ({limit:#x} bytes)", device=path, offset=offset
                )
            if limit is not None and uio_map is not None and size > limit:
                raise RegionOutOfRange(f"uio map {uio_map} is only {limit:#x} bytes", device=path)
            page_off = offset - offset % PAGE
            self.skew = offset - page_off
            length = self.skew + size
            flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_SYNC | os.O_CLOEXEC
            try:
                self._fd = os.open(path, flags)
            except OSError as e:
                raise os_error(e, path, "open") from e
            prot = _mmap.PROT_READ | (_mmap.PROT_WRITE if writable else 0)
            try:
                self._map = _mmap.mmap(self._fd, length, flags=_mmap.MAP_SHARED, prot=prot, offset=page_off)
            except OSError as e:
                os.close(self._fd)
                self._fd = -1
                raise os_error(e, path, f"mmap of {length:#x} bytes at {page_off:#x}") from e
            except ValueError as e:  # mmap's own argument checks (e.g. empty file)
                os.close(self._fd)
                self._fd = -1
                raise HardwareError(f"cannot map: {e}", device=path) from e
        self.size = length
        self.file_offset = page_off
        self._view = memoryview(self._map)

    @staticmethod
    def _limit(path: str, uio_map: int | None) -> int | None:
        """How many bytes *path* can map (file or BAR size), or None when the kernel won't say."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise os_error(e, path, "stat") from e
        if stat.S_ISDIR(st.st_mode):
            raise UsageError("is a directory; give a file, resourceN, /dev/mem or /dev/uioN", device=path)
        if uio_map is not None:
            return _uio_size(path, uio_map)
        if stat.S_ISREG(st.st_mode) and st.st_size:
            return st.st_size  # regular files and sysfs resourceN (size == BAR size)
        if stat.S_ISBLK(st.st_mode):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    return os.lseek(fd, 0, os.SEEK_END)
                finally:
                    os.close(fd)
            except OSError as e:
                raise os_error(e, path, "size") from e
        if stat.S_ISREG(st.st_mode):
            return 0
        return None

    def buffer(self) -> memoryview | None:
        return self._view

    def load(self, offset: int, width: int) -> int:
        # Only reached for unusual callers; the Region indexes the buffer directly.
        assert self._view is not None
        return int(self._view[offset : offset + width].cast({1: "B", 2: "H", 4: "I", 8: "Q"}[width])[0])

    def store(self, offset: int, width: int, value: int) -> None:
        assert self._view is not None
        self._view[offset : offset + width].cast({1: "B", 2: "H", 4: "I", 8: "Q"}[width])[0] = value

    def close(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError as e:  # someone still holds a view: say so rather than leak silently
                raise HardwareError(f"cannot unmap: a view of the mapping is still alive ({e})", device=self.name) from e
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
