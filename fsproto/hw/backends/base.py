"""The backend interface: one window of some address space that performs sized accesses.

A :class:`~fsproto.hw.region.Region` does the checking (alignment, bounds, read-only, dry-run);
a backend only moves bits. Implementations:

* :class:`~fsproto.hw.backends.mapped.MappedBackend` -- ``mmap`` of a path (a file, ``/dev/mem``,
  a sysfs ``resourceN``, ``/dev/uioN``) or of anonymous memory; exposes a direct buffer, so the
  region uses ``memoryview.cast`` element accesses (one load or store of exactly the width,
  hardware.md 2.6).
* :class:`~fsproto.hw.backends.qtest.QtestBackend` -- a window of a QEMU guest's physical address
  space driven over the qtest socket (``readl``/``writel``...): every access is one command.
* :class:`~fsproto.hw.backends.fake.FakeBackend` -- in-process memory with register hooks and an
  access log, for unit tests.

Values are the little-endian interpretation of the bytes (what a little-endian CPU loads); the
region swaps for big-endian windows.
"""

from __future__ import annotations

import abc

from fsproto.errors import AccessDenied, HardwareError

WIDTHS = (1, 2, 4, 8)


class Backend(abc.ABC):
    """A window of ``size`` bytes that can be loaded from and stored to in 1/2/4/8-byte units.

    Offsets are relative to the window; callers (the Region) have already checked alignment and
    bounds. Methods raise only :mod:`fsproto.errors` types (HardwareError family).
    """

    name: str = "?"
    size: int = 0
    writable: bool = False

    def buffer(self) -> memoryview | None:
        """A byte view of the window when it is host memory (mmap), else None."""
        return None

    @abc.abstractmethod
    def load(self, offset: int, width: int) -> int:
        """One access of *width* bytes at *offset*. Raises HardwareError (e.g. QtestError)."""

    @abc.abstractmethod
    def store(self, offset: int, width: int, value: int) -> None:
        """One store of *width* bytes at *offset*. Raises HardwareError."""

    def read_bytes(self, offset: int, n: int) -> bytes:
        """Bulk copy out (memory windows only: no width guarantee). Raises HardwareError."""
        view = self.buffer()
        if view is not None:
            return bytes(view[offset : offset + n])
        return b"".join(self.load(offset + i, 1).to_bytes(1, "little") for i in range(n))

    def write_bytes(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Bulk copy in (memory windows only). Raises HardwareError."""
        view = self.buffer()
        if view is not None:
            view[offset : offset + len(data)] = data
            return
        for i, b in enumerate(bytes(data)):
            self.store(offset + i, 1, b)

    def fill(self, offset: int, n: int, value: int) -> None:
        """Set *n* bytes to *value*. Raises HardwareError."""
        self.write_bytes(offset, bytes([value]) * n)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the window; idempotent."""

    def __str__(self) -> str:
        mode = "rw" if self.writable else "ro"
        return f"{type(self).__name__}({self.name}, {self.size:#x} bytes, {mode})"


class DirectBufferBackend(Backend):
    """A window that is host memory in ``self._view``: the Region indexes the buffer itself, so
    ``load``/``store`` are never called (DMA memory, VFIO-mapped BARs)."""

    _view: memoryview

    def buffer(self) -> memoryview | None:
        return self._view

    def load(self, offset: int, width: int) -> int:
        raise HardwareError("unreachable: direct buffer")

    def store(self, offset: int, width: int, value: int) -> None:
        raise HardwareError("unreachable: direct buffer")

    def close(self) -> None:
        self._view.release()


class DryRunFacade(Backend):
    """Wraps a read-only backend so a dry-run Region can be 'writable': loads pass through,
    stores are refused here (the Region logs them instead and never calls :meth:`store`)."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.name, self.size, self.writable = inner, inner.name, inner.size, True

    def load(self, offset: int, width: int) -> int:
        return self.inner.load(offset, width)

    def store(self, offset: int, width: int, value: int) -> None:
        raise AccessDenied("dry run: no store may reach the device", device=self.name, offset=offset)

    def read_bytes(self, offset: int, n: int) -> bytes:
        return self.inner.read_bytes(offset, n)

    def write_bytes(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        raise AccessDenied("dry run: no store may reach the device", device=self.name, offset=offset)

    def close(self) -> None:
        self.inner.close()
