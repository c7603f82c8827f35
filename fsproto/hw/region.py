"""Region: a checked window onto a backend, with peek/poke in exact widths.

``r8/r16/r32/r64`` and ``w8/w16/w32/w64`` each do **one** access of exactly that width, at a
naturally aligned offset inside the window, or raise. Over host memory (mmap) they index a
``memoryview.cast('B'|'H'|'I'|'Q')``, the one pure-Python idiom that CPython lowers to a single
load or store; ctypes setters (load-then-store), ``struct.pack_into`` (memset first) and slices
(two overlapping accesses) are never used for registers (hardware.md 2.6). The guarantee is
empirical per CPython build, as the spec says.

Options: big-endian windows (the value is byte-swapped after the single access), read-only
(the default for anything mapped from a path), 64-bit registers as two 32-bit accesses
(``split64``; also ``r64_lh``/``w64_lh``/``w64_hl`` explicitly, libvfn's naming), and dry-run:
stores are logged to :attr:`Region.log` and the ``fsproto.hw`` logger instead of being done.

Bulk ``read``/``write``/``fill`` are for memory windows (queues, buffers): no width guarantee.

Limits: a window must start 8-byte aligned inside its backend, so that natural alignment in the
window is natural alignment on the bus. A file mapping that the file's owner truncates underneath
us raises SIGBUS in the kernel; we check the size when mapping but cannot prevent that race.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from types import TracebackType
from typing import Callable

from fsproto.errors import AccessDenied, AlignmentError, HardwareError, RegionOutOfRange, UsageError
from fsproto.hw.backends.base import Backend

log = logging.getLogger("fsproto.hw")

_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}
_NATIVE_LE = sys.byteorder == "little"


@dataclass(frozen=True)
class LoggedStore:
    """One store a dry-run region did not do."""

    region: str
    offset: int
    width: int  # bytes; 0 for a bulk write/fill
    value: int | bytes

    def __str__(self) -> str:
        if self.width:
            return f"dry-run: {self.region} w{self.width * 8} {self.offset:#x} <- {self.value:#0{2 + 2 * self.width}x}"
        return f"dry-run: {self.region} write {len(self.value)} bytes at {self.offset:#x}"  # type: ignore[arg-type]


def _swap(value: int, width: int) -> int:
    return int.from_bytes(value.to_bytes(width, "little"), "big")


class Region:
    """A mapped window with sized, checked accesses.

    ``Region(backend, offset=0, size=None, writable=None, big_endian=False, split64=False,
    dry_run=False)``. *writable* defaults to the backend's mode; asking for more raises
    AccessDenied. ``close()`` is idempotent and closes the backend only if the region owns it.

    Every accessor raises AlignmentError (misaligned), RegionOutOfRange (outside the window),
    AccessDenied (store to a read-only region), HardwareError (closed region, backend failure),
    UsageError (a value that does not fit the width, a non-integer offset).
    """

    # The accessors are built per instance in _bind() as closures over the cast views: that is
    # what keeps a checked peek near 60 ns, ~3.5-4x a bare memoryview index (tools/bench_hw.py).
    r8: Callable[[int], int]
    r16: Callable[[int], int]
    r32: Callable[[int], int]
    r64: Callable[[int], int]
    w8: Callable[[int, int], None]
    w16: Callable[[int, int], None]
    w32: Callable[[int, int], None]
    w64: Callable[[int, int], None]

    def __init__(
        self,
        backend: Backend,
        *,
        offset: int = 0,
        size: int | None = None,
        writable: bool | None = None,
        big_endian: bool = False,
        split64: bool = False,
        dry_run: bool = False,
        name: str | None = None,
        owns_backend: bool = False,
    ) -> None:
        if size is None:
            size = backend.size - offset
        if offset < 0 or size < 0 or offset + size > backend.size:
            raise RegionOutOfRange(
                f"window {offset:#x}+{size:#x} does not fit the {backend.size:#x}-byte mapping",
                device=backend.name,
                offset=offset,
            )
        if offset % 8:
            raise AlignmentError("a window must start 8-byte aligned in its mapping", device=backend.name, offset=offset)
        if writable is None:
            writable = backend.writable
        if writable and not backend.writable:
            raise AccessDenied(
                "the mapping is read-only; map it again with writable=True (CLI: poke)", device=backend.name
            )
        self._backend = backend
        self._base = offset
        self._size = size
        self._writable = writable
        self._big_endian = big_endian
        self._split64 = split64
        self._dry_run = dry_run
        self._owns_backend = owns_backend
        self._name = name or (backend.name if offset == 0 else f"{backend.name}+{offset:#x}")
        self._closed = False
        self._views: list[memoryview] = []
        self._children: list[Region] = []
        self.log: list[LoggedStore] = []
        self._bind()

    # -- properties ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        return self._size

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def big_endian(self) -> bool:
        return self._big_endian

    @property
    def split64(self) -> bool:
        return self._split64

    @property
    def dry_run(self) -> bool:
        return self._dry_run

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def base(self) -> int:
        """Offset of this window inside its backend."""
        return self._base

    # -- accessor construction -----------------------------------------------------------------------
    def _bind(self) -> None:
        direct = self._backend.buffer()
        for width in (1, 2, 4, 8):
            if direct is not None:
                reader, writer = self._direct_pair(direct, width)
            else:
                reader, writer = self._backend_pair(width)
            setattr(self, f"r{width * 8}", reader)
            setattr(self, f"w{width * 8}", writer)
        if self._split64:
            self.r64 = self.r64_lh
            self.w64 = self.w64_lh

    def _fail(self, offset: object, width: int, value: object = None, *, store: bool = False) -> None:
        """Raise the right typed error for a rejected access (the slow path)."""
        kind = f"{width * 8}-bit {'store' if store else 'load'}"
        if self._closed:
            raise HardwareError(f"{kind}: the region is closed", device=self._name)
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise UsageError(f"{kind}: offset {offset!r} is not an integer", device=self._name)
        if offset < 0 or offset + width > self._size:
            raise RegionOutOfRange(
                f"{kind} outside the {self._size:#x}-byte region", device=self._name, offset=offset
            )
        if offset % width:
            raise AlignmentError(
                f"{kind} is not {width}-byte aligned; registers take naturally aligned accesses only",
                device=self._name,
                offset=offset,
            )
        if store and not self._writable:
            raise AccessDenied("region is read-only; map it with writable=True (CLI: poke)", device=self._name, offset=offset)
        if store and (not isinstance(value, int) or not 0 <= value < 1 << (8 * width)):
            raise UsageError(f"{kind}: value {value!r} does not fit in {width * 8} bits", device=self._name, offset=offset)
        raise HardwareError(f"{kind} failed", device=self._name, offset=offset)

    def _direct_pair(self, direct: memoryview, width: int) -> tuple[Callable[[int], int], Callable[[int, int], None]]:
        base, size = self._base, self._size
        # The typed view starts at the window base (8-aligned) and covers whole items only.
        raw = direct[base : base + size - size % width]
        view = raw.cast(_FORMATS[width])
        self._views += [raw, view]
        lim = size - width
        mask = width - 1
        shift = width.bit_length() - 1
        top = 1 << (8 * width)
        fail = self._fail
        swap = self._big_endian == _NATIVE_LE and width > 1
        writable = self._writable and not self._dry_run

        # A window whose size is a power of two checks bounds and alignment with one AND: the
        # valid offsets are exactly those whose bits lie inside size - width (a negative offset
        # has all high bits set, so it fails too). A value fits iff value >> bits is 0 (a negative
        # one shifts to -1): a small-int shift, cheaper than comparing against 1 << 64.
        pow2 = size >= width and size & (size - 1) == 0
        bad, nbits = ~(size - width), 8 * width

        if not swap and pow2 and shift == 0:

            def read(offset: int) -> int:
                try:
                    if offset & bad:
                        fail(offset, width)
                    return view[offset]
                except (TypeError, ValueError):  # released view (closed) or a non-int offset
                    fail(offset, width)
                    raise

            def write(offset: int, value: int) -> None:
                try:
                    if offset & bad or value >> nbits:
                        self._reject_or_log(offset, width, value)
                        return
                    view[offset] = value
                except (TypeError, ValueError):
                    fail(offset, width, value, store=True)
                    raise

        elif not swap and pow2:

            def read(offset: int) -> int:
                try:
                    if offset & bad:
                        fail(offset, width)
                    return view[offset >> shift]
                except (TypeError, ValueError):
                    fail(offset, width)
                    raise

            def write(offset: int, value: int) -> None:
                try:
                    if offset & bad or value >> nbits:
                        self._reject_or_log(offset, width, value)
                        return
                    view[offset >> shift] = value
                except (TypeError, ValueError):
                    fail(offset, width, value, store=True)
                    raise

        elif not swap:

            def read(offset: int) -> int:
                try:
                    if offset & mask or offset < 0 or offset > lim:
                        fail(offset, width)
                    return view[offset >> shift]
                except (TypeError, ValueError):  # released view (closed) or a non-int offset
                    fail(offset, width)
                    raise

            def write(offset: int, value: int) -> None:
                try:
                    if offset & mask or offset < 0 or offset > lim or not 0 <= value < top:
                        self._reject_or_log(offset, width, value)
                        return
                    view[offset >> shift] = value
                except (TypeError, ValueError):
                    fail(offset, width, value, store=True)
                    raise

        else:

            def read(offset: int) -> int:
                try:
                    if offset & mask or offset < 0 or offset > lim:
                        fail(offset, width)
                    return _swap(view[offset >> shift], width)
                except (TypeError, ValueError):
                    fail(offset, width)
                    raise

            def write(offset: int, value: int) -> None:
                try:
                    if offset & mask or offset < 0 or offset > lim or not 0 <= value < top:
                        self._reject_or_log(offset, width, value)
                        return
                    view[offset >> shift] = _swap(value, width)
                except (TypeError, ValueError, OverflowError):
                    fail(offset, width, value, store=True)
                    raise

        if not writable:  # read-only or dry run: every store takes the slow path (raise or log)

            def write(offset: int, value: int) -> None:
                self._reject_or_log(offset, width, value)

        read.__doc__ = f"One {width * 8}-bit load at *offset*; see Region for what it raises."
        write.__doc__ = f"One {width * 8}-bit store of *value* at *offset*; see Region for what it raises."
        return read, write

    def _backend_pair(self, width: int) -> tuple[Callable[[int], int], Callable[[int, int], None]]:
        backend, base, lim, mask = self._backend, self._base, self._size - width, width - 1
        top = 1 << (8 * width)
        big = self._big_endian and width > 1
        fail = self._fail

        def read(offset: int) -> int:
            try:
                if self._closed or offset & mask or offset < 0 or offset > lim:
                    fail(offset, width)
            except TypeError:
                fail(offset, width)
            value = backend.load(base + offset, width)
            return _swap(value, width) if big else value

        def write(offset: int, value: int) -> None:
            try:
                bad = self._closed or offset & mask or offset < 0 or offset > lim or not 0 <= value < top
            except TypeError:
                bad = True
            if bad or not self._writable or self._dry_run:
                self._reject_or_log(offset, width, value)
                return
            backend.store(base + offset, width, _swap(value, width) if big else value)

        read.__doc__ = f"One {width * 8}-bit load at *offset* (one backend access)."
        write.__doc__ = f"One {width * 8}-bit store at *offset* (one backend access)."
        return read, write

    def _reject_or_log(self, offset: int, width: int, value: int) -> None:
        """Slow path of a store: raise for bad input, or log it when this is a dry run."""
        try:
            ok = (
                not self._closed
                and isinstance(offset, int)
                and 0 <= offset <= self._size - width
                and not offset % width
                and self._writable
                and isinstance(value, int)
                and 0 <= value < 1 << (8 * width)
            )
        except TypeError:
            ok = False
        if not ok:
            self._fail(offset, width, value, store=True)
        entry = LoggedStore(self._name, offset, width, value)
        self.log.append(entry)
        log.info("%s", entry)

    # -- 64-bit as two 32-bit accesses ----------------------------------------------------------------
    def r64_lh(self, offset: int) -> int:
        """64-bit load as two 32-bit loads, low dword first (controllers that take only 32-bit MMIO).

        Raises like r64.
        """
        self._check64(offset)
        lo = self.r32(offset + (4 if self._big_endian else 0))
        hi = self.r32(offset + (0 if self._big_endian else 4))
        return hi << 32 | lo

    def w64_lh(self, offset: int, value: int) -> None:
        """64-bit store as two 32-bit stores, low dword first. Raises like w64."""
        self._check64(offset, value)
        lo_off, hi_off = (offset + 4, offset) if self._big_endian else (offset, offset + 4)
        self.w32(lo_off, value & 0xFFFFFFFF)
        self.w32(hi_off, value >> 32)

    def w64_hl(self, offset: int, value: int) -> None:
        """64-bit store as two 32-bit stores, high dword first. Raises like w64."""
        self._check64(offset, value)
        lo_off, hi_off = (offset + 4, offset) if self._big_endian else (offset, offset + 4)
        self.w32(hi_off, value >> 32)
        self.w32(lo_off, value & 0xFFFFFFFF)

    def _check64(self, offset: int, value: int | None = None) -> None:
        # Checked as one 64-bit access so a half-done split store cannot happen on bad input.
        try:
            ok = not self._closed and 0 <= offset <= self._size - 8 and not offset % 8
            if value is not None:
                ok = ok and self._writable and 0 <= value < 1 << 64
        except TypeError:
            ok = False
        if not ok:
            self._fail(offset, 8, value, store=value is not None)

    # -- generic sized access ---------------------------------------------------------------------
    def peek(self, offset: int, width: int = 32) -> int:
        """One load of *width* bits (8/16/32/64). Raises UsageError for another width, else like rN."""
        return self._accessor("r", width)(offset)

    def poke(self, offset: int, value: int, width: int = 32) -> None:
        """One store of *width* bits. Raises UsageError for another width, else like wN."""
        self._accessor("w", width)(offset, value)

    def _accessor(self, kind: str, width: int) -> Callable:  # type: ignore[type-arg]
        if width not in (8, 16, 32, 64):
            raise UsageError(f"width {width} is not one of 8, 16, 32, 64", device=self._name)
        return getattr(self, f"{kind}{width}")  # type: ignore[no-any-return]

    # -- bulk memory access -------------------------------------------------------------------------
    def _check_span(self, offset: int, n: int, *, store: bool) -> None:
        if self._closed:
            raise HardwareError("the region is closed", device=self._name)
        if not isinstance(offset, int) or not isinstance(n, int) or n < 0:
            raise UsageError(f"bad span {offset!r}+{n!r}", device=self._name)
        if offset < 0 or offset + n > self._size:
            raise RegionOutOfRange(f"{n} bytes do not fit the {self._size:#x}-byte region", device=self._name, offset=offset)
        if store and not self._writable:
            raise AccessDenied("region is read-only; map it with writable=True", device=self._name, offset=offset)

    def read_many(self, spans: list[tuple[int, int]]) -> bytes:
        """The bytes of several (offset, length) spans, concatenated with one copy where the window
        is host memory (a bounce buffer's slots). Raises RegionOutOfRange, HardwareError."""
        for offset, n in spans:
            self._check_span(offset, n, store=False)
        view = self._backend.buffer()
        if view is None:
            return b"".join(self._backend.read_bytes(self._base + o, n) for o, n in spans)
        base = self._base
        return b"".join([view[base + o : base + o + n] for o, n in spans])

    def read(self, offset: int, n: int) -> bytes:
        """Copy *n* bytes out (memory windows; not for registers). Raises RegionOutOfRange, HardwareError."""
        self._check_span(offset, n, store=False)
        return self._backend.read_bytes(self._base + offset, n)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Copy *data* in (memory windows). Raises RegionOutOfRange, AccessDenied, HardwareError."""
        self._check_span(offset, len(data), store=True)
        if self._dry_run:
            self.log.append(LoggedStore(self._name, offset, 0, bytes(data)))
            log.info("%s", self.log[-1])
            return
        self._backend.write_bytes(self._base + offset, data)

    def fill(self, offset: int, n: int, value: int = 0) -> None:
        """Set *n* bytes at *offset* to *value*. Raises like write, UsageError for a non-byte value."""
        self._check_span(offset, n, store=True)
        if not isinstance(value, int) or not 0 <= value <= 0xFF:
            raise UsageError(f"fill value {value!r} is not a byte", device=self._name)
        if self._dry_run:
            self.log.append(LoggedStore(self._name, offset, 0, bytes([value]) * n))
            return
        self._backend.fill(self._base + offset, n, value)

    def hexdump(self, offset: int = 0, n: int = 256) -> str:
        """``xxd``-style lines for *n* bytes at *offset* (clipped to the region). Raises like read."""
        n = max(0, min(n, self._size - offset))
        data = self.read(offset, n)
        lines = []
        for i in range(0, len(data), 16):
            chunk = data[i : i + 16]
            hexes = " ".join(chunk[j : j + 2].hex() for j in range(0, len(chunk), 2))
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            lines.append(f"{offset + i:08x}: {hexes:<39}  {text}")
        return "\n".join(lines)

    # -- windows and lifetime -----------------------------------------------------------------------
    def sub(self, offset: int, size: int, **options: object) -> "Region":
        """A window inside this one (same backend, same mode unless narrowed).

        Raises RegionOutOfRange, AlignmentError (start not 8-byte aligned), AccessDenied.
        """
        if self._closed:
            raise HardwareError("the region is closed", device=self._name)
        if offset < 0 or size < 0 or offset + size > self._size:
            raise RegionOutOfRange(f"window {offset:#x}+{size:#x} outside the region", device=self._name, offset=offset)
        opts: dict = {"writable": self._writable, "big_endian": self._big_endian, "split64": self._split64, "dry_run": self._dry_run}
        opts.update(options)
        if opts["writable"] and not self._writable:
            raise AccessDenied("cannot widen a read-only region to writable", device=self._name)
        child = Region(self._backend, offset=self._base + offset, size=size, name=f"{self._name}+{offset:#x}", **opts)
        if opts["dry_run"]:
            child.log = self.log  # one log for the whole dry run
        self._children.append(child)
        return child

    def close(self) -> None:
        """Release the views (and the backend when owned); idempotent. Later accesses raise."""
        if self._closed:
            return
        self._closed = True
        for child in self._children:
            child.close()
        for view in reversed(self._views):
            view.release()
        self._views.clear()
        if self._owns_backend:
            self._backend.close()

    def __enter__(self) -> "Region":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __str__(self) -> str:
        flags = ["rw" if self._writable else "ro", "be" if self._big_endian else "le"]
        if self._split64:
            flags.append("split64")
        if self._dry_run:
            flags.append("dry-run")
        if self._closed:
            flags.append("closed")
        return f"Region({self._name}, {self._size:#x} bytes, {', '.join(flags)})"

    __repr__ = __str__
