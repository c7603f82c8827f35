"""DMA memory: malloc/free outside the GC heap, mpin/munpin, vir2phys through pagemap.

References: hardware.md 2.1 (pagemap bits, PFN visibility, the zero page), 2.2 (what pins
memory: the recipe followed here is "MAP_SHARED anonymous, populated, hugetlb when reserved,
MADV_DONTFORK, write-touched", which survives fork and never maps the zero page), kernel
``Documentation/admin-guide/mm/pagemap.rst``.

:class:`DmaBuffer` is the interface a driver sees -- ``device_addr(offset)`` (what to program
into a controller), ``region`` (checked r32/w32... on the buffer), bulk ``read``/``write``/``fill``,
``free()``. :class:`HostBuffer` implements it over host memory with physical addresses from
pagemap (uio / no-IOMMU bring-up); the qtest backend implements it over guest RAM.

Limits: ``mlock`` stops swap-out, not migration or compaction (2.2); a pagemap physical address
is only what a device should use when no IOMMU translates (uio, /dev/mem). Use hugetlb pages
(reserve them with ``vm.nr_hugepages``) for buffers that must be physically contiguous.
"""

from __future__ import annotations

import abc
import ctypes
import mmap as _mmap
import os
import resource
import sys
import weakref
from dataclasses import dataclass
from types import TracebackType

from fsproto.errors import AccessDenied, HardwareError, UnbackedMemory, UsageError
from fsproto.hw.backends.base import DirectBufferBackend
from fsproto.hw.region import Region

PAGE = _mmap.PAGESIZE
HUGE_PAGE = 2 << 20

_PROT_RW = _mmap.PROT_READ | _mmap.PROT_WRITE
_MAP_SHARED, _MAP_PRIVATE, _MAP_FIXED, _MAP_ANON = 0x01, 0x02, 0x10, 0x20
_MAP_NORESERVE, _MAP_POPULATE, _MAP_HUGETLB = 0x4000, 0x8000, 0x40000
_MADV_DONTFORK, _MADV_NOHUGEPAGE = 10, 15

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value

# --- pagemap ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageInfo:
    """One decoded ``/proc/self/pagemap`` entry (pagemap.rst bit layout)."""

    addr: int
    raw: int

    @property
    def present(self) -> bool:
        return bool(self.raw >> 63 & 1)

    @property
    def swapped(self) -> bool:
        return bool(self.raw >> 62 & 1)

    @property
    def file_or_shared(self) -> bool:
        return bool(self.raw >> 61 & 1)

    @property
    def exclusive(self) -> bool:
        return bool(self.raw >> 56 & 1)

    @property
    def pfn(self) -> int:
        return self.raw & ((1 << 55) - 1) if self.present else 0

    def __str__(self) -> str:
        flags = [n for n in ("present", "swapped", "exclusive", "file_or_shared") if getattr(self, n)]
        return f"{self.addr:#x}: pfn {self.pfn:#x} [{' '.join(flags) or 'not present'}]"


def pagemap(addr: int) -> PageInfo:
    """The pagemap entry of the page holding virtual address *addr* in this process.

    Raises AccessDenied (pagemap unreadable), UsageError (negative address).
    """
    if not isinstance(addr, int) or addr < 0:
        raise UsageError(f"bad virtual address {addr!r}")
    try:
        fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise AccessDenied(f"cannot open /proc/self/pagemap: {e.strerror}", device="/proc/self/pagemap") from e
    try:
        data = os.pread(fd, 8, addr // PAGE * 8)
    except OSError as e:
        raise HardwareError(f"pagemap read failed: {e.strerror}", device="/proc/self/pagemap", offset=addr) from e
    finally:
        os.close(fd)
    if len(data) != 8:
        raise UnbackedMemory("address is outside this process's address space", device="pagemap", offset=addr)
    return PageInfo(addr, int.from_bytes(data, "little"))


_zero_pfn: int | None = None


def zero_page_pfn() -> int | None:
    """PFN of the kernel's shared zero page (what a read-only-touched anonymous page maps), or
    None when PFNs are hidden (no CAP_SYS_ADMIN). Measured once per process (2.1)."""
    global _zero_pfn
    if _zero_pfn is None:
        probe = _mmap.mmap(-1, PAGE, flags=_mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS)
        try:
            addr = ctypes.addressof(ctypes.c_char.from_buffer(probe))
            _libc.madvise(addr, PAGE, _MADV_NOHUGEPAGE)  # a THP would map the huge zero page
            _ = probe[0]  # read fault only: maps the zero page
            _zero_pfn = pagemap(addr).pfn or None
        finally:
            del addr
            probe.close()
    return _zero_pfn


def vir2phys(addr: int) -> int:
    """Physical address of virtual address *addr* (PFN * page + offset in page).

    Raises AccessDenied when the kernel hides PFNs (reads 0 without CAP_SYS_ADMIN), UnbackedMemory
    for a page that is not present, swapped, or the shared zero page (write to it first: malloc()
    buffers are always written), UsageError for a bad address.
    """
    info = pagemap(addr)
    if not info.present:
        if info.swapped:
            raise UnbackedMemory("page is swapped out; mpin() the buffer so it stays resident", device="pagemap", offset=addr)
        raise UnbackedMemory("page is not present (never touched); write to it first, or use malloc()", device="pagemap", offset=addr)
    if info.pfn == 0:
        raise AccessDenied(
            "pagemap reports PFN 0: the kernel hides physical addresses without CAP_SYS_ADMIN; run as root with CAP_SYS_ADMIN",
            device="pagemap",
            offset=addr,
        )
    if info.pfn == zero_page_pfn():
        raise UnbackedMemory(
            "this is the shared zero page (read but never written): write to the page first; DMA into it would "
            "corrupt every process reading zeros",
            device="pagemap",
            offset=addr,
        )
    return info.pfn * PAGE + addr % PAGE


# --- pinning -----------------------------------------------------------------------------------


def _span(target: "HostBuffer | int", size: int | None) -> tuple[int, int]:
    if isinstance(target, HostBuffer):
        return target.addr, target.size if size is None else size
    if size is None:
        raise UsageError("mpin(addr) needs a size")
    return target, size


def mpin(target: "HostBuffer | int", size: int | None = None) -> None:
    """``mlock`` a buffer (or *size* bytes at an address): no swap-out. Not a migration pin (2.2).

    Raises AccessDenied naming RLIMIT_MEMLOCK / CAP_IPC_LOCK when the kernel refuses.
    """
    addr, n = _span(target, size)
    if _libc.mlock(addr, n) != 0:
        err = ctypes.get_errno()
        soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        raise AccessDenied(
            f"mlock of {n} bytes failed ({os.strerror(err)}): RLIMIT_MEMLOCK is {soft} bytes; raise `ulimit -l` "
            "or grant CAP_IPC_LOCK",
            offset=addr,
        )


def munpin(target: "HostBuffer | int", size: int | None = None) -> None:
    """Undo :func:`mpin`. Raises HardwareError."""
    addr, n = _span(target, size)
    if _libc.munlock(addr, n) != 0:
        raise HardwareError(f"munlock failed: {os.strerror(ctypes.get_errno())}", offset=addr)


# --- buffers -------------------------------------------------------------------------------------


class DmaBuffer(abc.ABC):
    """Memory a device can reach: ``device_addr()`` is what goes into a PRP, a BAR register...

    Subclasses: :class:`HostBuffer` (pagemap physical addresses) and
    :class:`fsproto.hw.backends.qtest.GuestBuffer` (guest-physical addresses).
    """

    size: int
    region: Region

    @abc.abstractmethod
    def device_addr(self, offset: int = 0) -> int:
        """The address the device must be given for byte *offset*. Raises HardwareError."""

    @abc.abstractmethod
    def free(self) -> None:
        """Release the memory; idempotent. Later use raises HardwareError."""

    def read(self, offset: int, n: int) -> bytes:
        """Raises RegionOutOfRange, HardwareError (freed)."""
        return self.region.read(offset, n)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Raises RegionOutOfRange, HardwareError (freed)."""
        self.region.write(offset, data)

    def fill(self, offset: int = 0, n: int | None = None, value: int = 0) -> None:
        """Raises RegionOutOfRange, UsageError, HardwareError (freed)."""
        self.region.fill(offset, self.size - offset if n is None else n, value)

    def __enter__(self) -> "DmaBuffer":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.free()


class _HostBackend(DirectBufferBackend):
    def __init__(self, view: memoryview, name: str) -> None:
        self._view = view
        self.size = len(view)
        self.writable = True
        self.name = name


def _unmap(addr: int, size: int) -> None:
    _libc.munmap(addr, size)


class HostBuffer(DmaBuffer):
    """Off-heap host memory from :func:`malloc`; physical addresses via pagemap.

    ``view`` is a writable memoryview for bulk work. ``free()`` works while views exist: the pages
    are handed back to the kernel at once (the range is replaced by fresh, unshared memory), and
    the address range itself is unmapped when the last view dies -- a stale view never faults
    and never sees another buffer's data.
    """

    def __init__(self, size: int, *, huge: bool) -> None:
        self.huge = huge
        self.page_size = HUGE_PAGE if huge else PAGE
        self.size = -(-size // self.page_size) * self.page_size
        flags = _MAP_SHARED | _MAP_ANON | _MAP_POPULATE | (_MAP_HUGETLB if huge else 0)
        addr = _libc.mmap(None, self.size, _PROT_RW, flags, -1, 0)
        if addr in (None, _MAP_FAILED):
            err = ctypes.get_errno()
            if huge:
                raise HardwareError(
                    f"hugetlb mmap of {self.size} bytes failed ({os.strerror(err)}): reserve pages with "
                    "`sysctl vm.nr_hugepages=N`, or malloc(huge=False)"
                )
            raise HardwareError(f"mmap of {self.size} bytes failed: {os.strerror(err)}")
        self.addr: int = addr
        _libc.madvise(addr, self.size, _MADV_DONTFORK)  # a fork must not CoW-move our pages (2.2, measured)
        if not huge:
            _libc.madvise(addr, self.size, _MADV_NOHUGEPAGE)  # no khugepaged collapse under a device
        ctypes.memset(addr, 0, self.size)  # write-touch: private pages, never the zero page
        self._arr = (ctypes.c_ubyte * self.size).from_address(addr)
        self._finalizer = weakref.finalize(self._arr, _unmap, addr, self.size)
        self.view = memoryview(self._arr).cast("B")
        self.region = Region(_HostBackend(self.view, f"dma@{addr:#x}"), writable=True, owns_backend=True)
        self.freed = False

    def device_addr(self, offset: int = 0) -> int:
        """Physical address of byte *offset* (pagemap). Raises like :func:`vir2phys`, RegionOutOfRange."""
        return vir2phys(self._addr_of(offset))

    def phys(self, offset: int = 0) -> int:
        """Same as :meth:`device_addr` (uio/no-IOMMU: the device uses physical addresses)."""
        return self.device_addr(offset)

    def _addr_of(self, offset: int) -> int:
        if self.freed:
            raise HardwareError("buffer was freed", device=f"dma@{self.addr:#x}")
        if not 0 <= offset < self.size:
            from fsproto.errors import RegionOutOfRange

            raise RegionOutOfRange(f"offset outside the {self.size}-byte buffer", device=f"dma@{self.addr:#x}", offset=offset)
        return self.addr + offset

    def contiguous(self) -> bool:
        """True when the whole buffer is physically contiguous (always true inside one huge page).

        Raises like :func:`vir2phys`.
        """
        first = self.device_addr(0)
        return all(self.device_addr(o) == first + o for o in range(PAGE, self.size, PAGE))

    def free(self) -> None:
        if self.freed:
            return
        self.freed = True
        self.region.close()
        self.view.release()
        if sys.getrefcount(self._arr) > 2:  # someone still holds a view of the memory
            # Swap in fresh private memory at the same address: the DMA pages go back to the
            # kernel now; the finalizer unmaps the range when the last view dies.
            flags = _MAP_PRIVATE | _MAP_ANON | _MAP_FIXED | _MAP_NORESERVE
            _libc.mmap(self.addr, self.size, _PROT_RW, flags, -1, 0)
            del self._arr
        else:
            del self._arr
            self._finalizer()

    def __str__(self) -> str:
        state = "freed" if self.freed else ("hugetlb" if self.huge else "4k pages")
        return f"HostBuffer({self.addr:#x}, {self.size} bytes, {state})"

    __repr__ = __str__


def hugepages_free() -> int:
    """Free 2 MiB hugetlb pages (``HugePages_Free`` in /proc/meminfo), 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("HugePages_Free:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def malloc(size: int, *, huge: bool | None = None) -> HostBuffer:
    """Allocate *size* bytes of zeroed, populated, shared, fork-safe memory off the GC heap.

    *huge*: True requires hugetlb pages, False never uses them, None uses them for buffers
    larger than a page when enough are reserved (contiguity for multi-page DMA).
    Raises UsageError (size <= 0), HardwareError (mmap failed; names vm.nr_hugepages for huge).
    """
    if not isinstance(size, int) or size <= 0:
        raise UsageError(f"malloc size must be a positive integer, not {size!r}")
    if huge is None:
        huge = size > PAGE and hugepages_free() * HUGE_PAGE >= size
    return HostBuffer(size, huge=huge)


def free(buf: DmaBuffer) -> None:
    """Release a buffer from :func:`malloc` (or a guest allocator); idempotent."""
    buf.free()
