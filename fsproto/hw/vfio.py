"""VFIO type1: a PCI function bound to vfio-pci, its BARs and config space through the device fd,
and DMA memory mapped into the IOMMU at IOVAs from our own allocator.

References: Linux ``Documentation/driver-api/vfio.rst`` (container/group/device sequence),
``include/uapi/linux/vfio.h`` (ioctl numbers and structs, declared below); hardware.md 2.2
(VFIO_IOMMU_MAP_DMA pins with FOLL_LONGTERM: no migration under the device) and 2.5.

Accesses: a BAR whose region allows mmap is mapped from the device fd and accessed with the
Region's single-load/single-store views; otherwise (and for config space) every access is one
``pread``/``pwrite`` of exactly the width on the device fd, which the kernel turns into one
sized ioread/iowrite (hardware.md 2.6). DMA buffers are :func:`fsproto.hw.memory.malloc`
memory; ``device_addr`` is the IOVA, chosen inside the IOMMU's reported usable ranges.

Interrupts: :meth:`VfioDevice.enable_msix` asks the kernel (``VFIO_DEVICE_SET_IRQS``) to
program the function's MSI-X table and signal one eventfd per vector
(:class:`fsproto.hw.interrupts.EventfdInterrupt`).

Limits: type1 containers (no iommufd cdev), one device per container, MSI-X only (no MSI or
INTx), no noiommu mode (Debian kernels lack CONFIG_VFIO_NOIOMMU, see the spec). Needs root (or a
chown'ed /dev/vfio/N) and enough RLIMIT_MEMLOCK for the mapped buffers.
"""

from __future__ import annotations

import ctypes
import mmap as _mmap
import os
import struct
from typing import TYPE_CHECKING

from fsproto.errors import AccessDenied, HardwareError, HardwareNotFound, RegionOutOfRange
from fsproto.hw.backends.base import Backend, DirectBufferBackend
from fsproto.hw.memory import DmaBuffer, HostBuffer, malloc
from fsproto.hw.pci import PciFunction, normalize_bdf
from fsproto.hw.region import Region

if TYPE_CHECKING:
    from fsproto.hw.interrupts import EventfdInterrupt
from fsproto.hw.safety import SYSFS_PCI, driver_of

# include/uapi/linux/vfio.h: _IO(VFIO_TYPE ';', VFIO_BASE 100 + n)
_IO = lambda n: (ord(";") << 8) | (100 + n)  # noqa: E731
VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU = _IO(0), _IO(1), _IO(2)
VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_GET_DEVICE_FD = _IO(3), _IO(4), _IO(6)
VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_SET_IRQS = _IO(8), _IO(9), _IO(10)
VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA = _IO(12), _IO(13), _IO(14)
VFIO_API_VERSION, VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU = 0, 1, 3
VFIO_GROUP_FLAGS_VIABLE = 1
VFIO_REGION_INFO_FLAG_MMAP = 4
VFIO_PCI_CONFIG_REGION_INDEX = 7
VFIO_PCI_MSIX_IRQ_INDEX = 2
VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 0, 1 << 2, 1 << 5
VFIO_DMA_MAP_FLAG_READ_WRITE = 3
VFIO_IOMMU_INFO_CAPS = 2
VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1
DEFAULT_IOVA_BASE = 1 << 32  # above the 32-bit hole (MSI window at 0xfee00000) when ranges are unknown

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


def _ioctl(fd: int, request: int, arg: ctypes.Array | int | None, what: str, device: str) -> int:  # type: ignore[type-arg]
    ptr = ctypes.addressof(arg) if isinstance(arg, ctypes.Array) else arg
    rc = _libc.ioctl(fd, request, ptr)
    if rc < 0:
        err = ctypes.get_errno()
        cls = AccessDenied if err in (1, 13) else HardwareError
        raise cls(f"{what} failed: {os.strerror(err)}", device=device)
    return rc


def _open(path: str, what: str, device: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise HardwareNotFound(f"{what}: {path} does not exist (modprobe vfio-pci; bind the device)", device=device) from None
    except OSError as e:
        cls = AccessDenied if e.errno in (1, 13) else HardwareError
        raise cls(f"{what}: {path}: {e.strerror}", device=device) from e


class FdAccessBackend(Backend):
    """A window of a VFIO region accessed with one pread/pwrite of exactly the width per access."""

    def __init__(self, fd: int, base: int, size: int, name: str) -> None:
        self.fd, self.base, self.size, self.name, self.writable = fd, base, size, name, True

    def load(self, offset: int, width: int) -> int:
        try:
            data = os.pread(self.fd, width, self.base + offset)
        except OSError as e:
            raise HardwareError(f"read at {offset:#x} failed: {e.strerror}", device=self.name, offset=offset) from e
        if len(data) != width:
            raise HardwareError(f"short read at {offset:#x}", device=self.name, offset=offset)
        return int.from_bytes(data, "little")

    def store(self, offset: int, width: int, value: int) -> None:
        try:
            os.pwrite(self.fd, value.to_bytes(width, "little"), self.base + offset)
        except OSError as e:
            raise HardwareError(f"write at {offset:#x} failed: {e.strerror}", device=self.name, offset=offset) from e


class FdMapBackend(DirectBufferBackend):
    """An mmap of a VFIO region (a BAR) from the device fd: direct single-width accesses."""

    def __init__(self, fd: int, base: int, size: int, name: str) -> None:
        self.name, self.size, self.writable = name, size, True
        self._map = _mmap.mmap(fd, size, flags=_mmap.MAP_SHARED, prot=_mmap.PROT_READ | _mmap.PROT_WRITE, offset=base)
        self._view = memoryview(self._map)

    def close(self) -> None:
        super().close()
        try:
            self._map.close()
        except BufferError:
            pass  # a Region view is still alive; the mapping goes with it


class VfioBuffer(DmaBuffer):
    """Host memory mapped into the container's IOMMU; ``device_addr`` is an IOVA."""

    def __init__(self, owner: "VfioDevice", size: int) -> None:
        self.owner = owner
        self.host: HostBuffer = malloc(size, huge=False)
        self.size = self.host.size
        self.region = self.host.region
        self.iova = owner._iova_alloc(self.size)
        arg = (ctypes.c_char * 32).from_buffer_copy(
            struct.pack("<IIQQQ", 32, VFIO_DMA_MAP_FLAG_READ_WRITE, self.host.addr, self.iova, self.size))
        try:
            _ioctl(owner.container, VFIO_IOMMU_MAP_DMA, arg, "VFIO_IOMMU_MAP_DMA (check ulimit -l)", owner.bdf)
        except BaseException:
            self.host.free()
            raise
        self.freed = False
        owner._buffers.add(self)

    def device_addr(self, offset: int = 0) -> int:
        """Raises RegionOutOfRange, HardwareError (freed)."""
        if self.freed:
            raise HardwareError("buffer was freed", device=f"iova@{self.iova:#x}")
        if not 0 <= offset < self.size:
            raise RegionOutOfRange(f"offset outside the {self.size}-byte buffer", device=f"iova@{self.iova:#x}",
                                   offset=offset)
        return self.iova + offset

    def free(self) -> None:
        if self.freed:
            return
        self.freed = True
        arg = (ctypes.c_char * 24).from_buffer_copy(struct.pack("<IIQQ", 24, 0, self.iova, self.size))
        try:
            if self.owner.container >= 0:
                _ioctl(self.owner.container, VFIO_IOMMU_UNMAP_DMA, arg, "VFIO_IOMMU_UNMAP_DMA", self.owner.bdf)
        finally:
            self.host.free()
            self.owner._buffers.discard(self)

    def __str__(self) -> str:
        return f"VfioBuffer(iova {self.iova:#x}, {self.size} bytes{', freed' if self.freed else ''})"


class VfioDevice:
    """``VfioDevice(bdf)``: container + group + device fd for a function bound to vfio-pci.

    ``pci`` is a :class:`PciFunction` over the VFIO config region; :meth:`map_bar` and
    :meth:`malloc` give what a driver needs. ``close()`` unmaps every buffer and closes the fds.
    Raises HardwareNotFound (no such device, not bound to vfio-pci, no IOMMU group), AccessDenied,
    HardwareError (group not viable: every device of the group must be bound to vfio-pci).
    """

    def __init__(self, bdf: str) -> None:
        self.bdf = normalize_bdf(bdf)
        self.container = self.group = self.fd = -1
        self._buffers: set[VfioBuffer] = set()
        self._regions: list[Region] = []
        sysdir = os.path.join(SYSFS_PCI, self.bdf)
        if not os.path.isdir(sysdir):
            raise HardwareNotFound("no such PCI device", device=self.bdf)
        driver = driver_of(sysdir)
        if driver != "vfio-pci":
            raise HardwareNotFound(f"bound to {driver or 'no driver'}, not vfio-pci; rebind it first", device=self.bdf)
        link = os.path.join(sysdir, "iommu_group")
        if not os.path.islink(link):
            raise HardwareNotFound("no IOMMU group (boot with intel_iommu=on / amd_iommu=on)", device=self.bdf)
        group_id = os.path.basename(os.readlink(link))
        try:
            self.container = _open("/dev/vfio/vfio", "open the VFIO container", self.bdf)
            if _ioctl(self.container, VFIO_GET_API_VERSION, None, "VFIO_GET_API_VERSION", self.bdf) != VFIO_API_VERSION:
                raise HardwareError("unknown VFIO API version", device=self.bdf)
            self.group = _open(f"/dev/vfio/{group_id}", "open the IOMMU group", self.bdf)
            status = (ctypes.c_char * 8).from_buffer_copy(struct.pack("<II", 8, 0))
            _ioctl(self.group, VFIO_GROUP_GET_STATUS, status, "VFIO_GROUP_GET_STATUS", self.bdf)
            if not struct.unpack_from("<II", status)[1] & VFIO_GROUP_FLAGS_VIABLE:
                raise HardwareError(f"IOMMU group {group_id} is not viable: bind all its devices to vfio-pci",
                                    device=self.bdf)
            fd = ctypes.c_int(self.container)
            _ioctl(self.group, VFIO_GROUP_SET_CONTAINER, ctypes.addressof(fd), "VFIO_GROUP_SET_CONTAINER", self.bdf)
            kind = VFIO_TYPE1v2_IOMMU if _ioctl(self.container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU,
                                                "VFIO_CHECK_EXTENSION", self.bdf) else VFIO_TYPE1_IOMMU
            _ioctl(self.container, VFIO_SET_IOMMU, kind, "VFIO_SET_IOMMU", self.bdf)
            name = ctypes.create_string_buffer(self.bdf.encode())
            self.fd = _ioctl(self.group, VFIO_GROUP_GET_DEVICE_FD, name, "VFIO_GROUP_GET_DEVICE_FD", self.bdf)
            self._ranges = self._iova_ranges()
            self._next_iova = self._ranges[0][0]
            cfg_off, cfg_size, _flags = self.region_info(VFIO_PCI_CONFIG_REGION_INDEX)
            config = Region(FdAccessBackend(self.fd, cfg_off, min(cfg_size, 4096), f"vfio:{self.bdf}/config"),
                            name=f"vfio:{self.bdf}/config", owns_backend=True)
            self.pci = PciFunction(self.bdf, config)
        except BaseException:
            self.close()
            raise

    def region_info(self, index: int) -> tuple[int, int, int]:
        """(offset in the device fd, size, flags) of VFIO region *index*. Raises HardwareError."""
        buf = (ctypes.c_char * 32).from_buffer_copy(struct.pack("<IIIIQQ", 32, 0, index, 0, 0, 0))
        _ioctl(self.fd, VFIO_DEVICE_GET_REGION_INFO, buf, f"VFIO_DEVICE_GET_REGION_INFO {index}", self.bdf)
        _argsz, flags, _i, _cap, size, offset = struct.unpack_from("<IIIIQQ", buf)
        return offset, size, flags

    def _iova_ranges(self) -> list[tuple[int, int]]:
        """Usable IOVA ranges (start, end inclusive) from the type1 IOVA-range capability."""
        head = (ctypes.c_char * 24).from_buffer_copy(struct.pack("<IIQII", 24, 0, 0, 0, 0))
        _ioctl(self.container, VFIO_IOMMU_GET_INFO, head, "VFIO_IOMMU_GET_INFO", self.bdf)
        argsz, flags = struct.unpack_from("<II", head)
        ranges: list[tuple[int, int]] = []
        if flags & VFIO_IOMMU_INFO_CAPS and argsz > 24:
            full = (ctypes.c_char * argsz).from_buffer_copy(struct.pack("<II", argsz, 0) + bytes(argsz - 8))
            _ioctl(self.container, VFIO_IOMMU_GET_INFO, full, "VFIO_IOMMU_GET_INFO", self.bdf)
            raw = bytes(full)
            off = struct.unpack_from("<I", raw, 16)[0]
            while off and off + 8 <= len(raw):
                cap_id, _ver, nxt = struct.unpack_from("<HHI", raw, off)
                if cap_id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
                    n = struct.unpack_from("<I", raw, off + 8)[0]
                    ranges = [struct.unpack_from("<QQ", raw, off + 16 + 16 * i) for i in range(n)]
                off = nxt
        usable = [(max(s, DEFAULT_IOVA_BASE), e) for s, e in ranges if e > DEFAULT_IOVA_BASE + (64 << 20)]
        return usable or [(DEFAULT_IOVA_BASE, (1 << 39) - 1)]

    def _iova_alloc(self, size: int) -> int:
        # A bump allocator inside the first usable range: IOVAs are never reused while open.
        start, end = self._ranges[0]
        iova = -(-self._next_iova // 4096) * 4096
        if iova + size - 1 > end:
            raise HardwareError(f"IOVA range {start:#x}-{end:#x} exhausted", device=self.bdf)
        self._next_iova = iova + size
        return iova

    def map_bar(self, index: int) -> Region:
        """BAR *index* as a writable Region (mmap when VFIO allows it, else pread/pwrite).

        Raises HardwareNotFound (an empty BAR), HardwareError.
        """
        offset, size, flags = self.region_info(index)
        if size == 0:
            raise HardwareNotFound(f"BAR{index} is not implemented", device=self.bdf)
        name = f"vfio:{self.bdf}/BAR{index}"
        backend: Backend
        try:
            if not flags & VFIO_REGION_INFO_FLAG_MMAP:
                raise OSError("no mmap")
            backend = FdMapBackend(self.fd, offset, size, name)
        except (OSError, ValueError):
            backend = FdAccessBackend(self.fd, offset, size, name)
        region = Region(backend, name=name, owns_backend=True)
        self._regions.append(region)
        return region

    def enable_msix(self, count: int) -> list["EventfdInterrupt"]:
        """MSI-X vectors 0..count-1, each signalling its own eventfd (VFIO_DEVICE_SET_IRQS).

        Raises HardwareNotFound (no MSI-X, or fewer vectors than asked), HardwareError.
        """
        from fsproto.hw.interrupts import EventfdInterrupt

        info = (ctypes.c_char * 16).from_buffer_copy(struct.pack("<IIII", 16, 0, VFIO_PCI_MSIX_IRQ_INDEX, 0))
        _ioctl(self.fd, VFIO_DEVICE_GET_IRQ_INFO, info, "VFIO_DEVICE_GET_IRQ_INFO (MSI-X)", self.bdf)
        available = struct.unpack_from("<IIII", info)[3]
        if available < count:
            raise HardwareNotFound(f"{count} MSI-X vectors asked for; the function has {available}", device=self.bdf)
        self.disable_msix()
        irqs = [EventfdInterrupt(v, f"{self.bdf} MSI-X {v}") for v in range(count)]
        arg = struct.pack("<IIIII", 20 + 4 * count, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                          VFIO_PCI_MSIX_IRQ_INDEX, 0, count) + struct.pack(f"<{count}i", *(i.fd for i in irqs))
        try:
            _ioctl(self.fd, VFIO_DEVICE_SET_IRQS, (ctypes.c_char * len(arg)).from_buffer_copy(arg),
                   "VFIO_DEVICE_SET_IRQS (MSI-X eventfds)", self.bdf)
        except BaseException:
            for i in irqs:
                i.close()
            raise
        self._irqs = irqs
        return irqs

    def disable_msix(self) -> None:
        """Turn MSI-X off again (a no-op when it is off) and close the eventfds. Raises HardwareError."""
        irqs, self._irqs = getattr(self, "_irqs", []), []
        if irqs and self.fd >= 0:
            arg = struct.pack("<IIIII", 20, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                              VFIO_PCI_MSIX_IRQ_INDEX, 0, 0)
            _ioctl(self.fd, VFIO_DEVICE_SET_IRQS, (ctypes.c_char * 20).from_buffer_copy(arg),
                   "VFIO_DEVICE_SET_IRQS (MSI-X off)", self.bdf)
        for i in irqs:
            i.close()

    def malloc(self, size: int) -> VfioBuffer:
        """DMA memory mapped at a fresh IOVA. Raises HardwareError, AccessDenied (memlock)."""
        return VfioBuffer(self, size)

    def close(self) -> None:
        """Turn interrupts off, unmap every buffer, close regions and fds; idempotent."""
        try:
            self.disable_msix()
        except HardwareError:
            pass
        for buf in list(self._buffers):
            try:
                buf.free()
            except HardwareError:
                pass
        for r in self._regions:
            r.close()
        self._regions.clear()
        if hasattr(self, "pci"):
            self.pci.close()
        for attr in ("fd", "group", "container"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)
