"""Attach a user-space driver to a controller: the BAR, the PCI function and a DMA allocator.

One :class:`Attachment` per backend of the hardware core, so the NVMe and AHCI drivers never
know where they run (hardware.md 6.1):

* :func:`qtest` -- QEMU's device model driven over qtest (CI, no guest, no root): an image
  file becomes the controller's disk; DMA memory is guest RAM (guest-physical addresses).
* :func:`uio` -- a function of this machine bound to ``uio_pci_generic`` (or unbound): BAR
  through sysfs ``resourceN``, DMA memory from :func:`fsproto.hw.memory.malloc` with pagemap
  physical addresses (needs root with CAP_SYS_ADMIN and no translating IOMMU, hardware.md 2.5).
* :func:`vfio` -- a function bound to ``vfio-pci`` behind an IOMMU (type1): see
  :mod:`fsproto.hw.vfio`; MSI-X vectors arrive as eventfds, and block devices wait on them.

``Attachment.interrupts(n)`` gives waiters for MSI-X vectors 1..n (one per I/O queue) where the
backend can deliver them: eventfds under vfio, messages into guest RAM under qtest (polled, so
only for tests and bring-up; qtest block devices poll the queues). uio has none (INTx only).

Limits: the uio path does not rebind drivers itself (``SysfsPci.rebind`` does, refused while a
kernel driver or a mount owns the function unless forced).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

from fsproto.errors import DeviceNotFound, HardwareError, RegionOutOfRange, UsageError
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme.queues import Allocator
from fsproto.hw.pci import PciFunction
from fsproto.hw.region import Region

NVME_BDF = "00:04.0"  # where the qtest machine puts the NVMe function
AHCI_BDF = "00:1f.2"  # q35's built-in ICH9 AHCI


@dataclass
class Attachment:
    """What a driver needs: a name, the PCI function, its register BAR, a DMA allocator."""

    name: str
    pci: PciFunction | None
    bar: Region
    alloc: Allocator
    closers: list[Callable[[], None]] = field(default_factory=list)
    machine: object | None = None  # the QtestMachine, when there is one (tests read its trace)
    image_fd: int | None = None  # the qtest image, held open so fsproto's device locks can flock it
    # (n) -> one waiter for each of MSI-X vectors 1..n (vector 0 is the admin queue's: it fires,
    # but admin completions are polled); None where the backend cannot deliver interrupts (uio).
    interrupts: Callable[[int], list] | None = None  # type: ignore[type-arg]
    interrupts_by_default: bool = False  # vfio: the block device waits on interrupts unless told not to

    def close(self) -> None:
        """Release everything in reverse order; idempotent, never raises."""
        while self.closers:
            try:
                self.closers.pop()()
            except Exception:  # noqa: BLE001 - teardown must reach the QEMU kill
                pass


def qtest(image: str | os.PathLike[str], *, controller: str = "nvme", serial: str = "fsproto",
          read_only: bool = False, device_props: str = "", trace: Sequence[str] = (), memory_mb: int = 256,
          namespaces: Sequence[str] = ()) -> Attachment:
    """A QEMU machine whose *controller* (``nvme`` or ``ahci``) has *image* as its disk.

    *device_props* are extra ``-device`` properties (``logical_block_size=4096``); *trace* names
    QEMU trace events (``pci_nvme_mmio_write``...) written to ``machine.trace_path``.
    *namespaces* (NVMe) are QEMU ``-drive`` option strings of further namespaces 2, 3, ...
    (``driver=null-co,size=1M,latency-ns=300000000,read-zeroes=on``: a slow one).
    Raises DeviceNotFound (no image), UsageError, HardwareNotFound (no QEMU), QtestError.
    """
    from fsproto.hw.backends.qtest import QtestMachine

    path = os.path.abspath(os.fspath(image))
    if not os.path.isfile(path):
        raise DeviceNotFound("no such image file", device=path)
    if "," in path:
        raise UsageError("QEMU cannot take an image path containing ','", device=path)
    # Read-only: NVMe takes a read-only drive; ide-hd refuses one, so AHCI gets a snapshot
    # (writes would go to a temporary overlay): either way nothing can reach the image.
    ro = (",readonly=on" if controller == "nvme" else ",snapshot=on") if read_only else ""
    drive = f"file={path},if=none,id=d0,format=raw,cache=writeback,discard=unmap{ro}"  # trim punches holes
    extra = f",{device_props}" if device_props else ""
    if controller == "nvme" and namespaces:
        devices = ["-drive", drive, "-device", f"nvme,id=nvme0,serial={serial},addr={NVME_BDF[3:]}{extra}",
                   "-device", "nvme-ns,drive=d0,bus=nvme0,nsid=1"]
        for i, more in enumerate(namespaces, 2):
            devices += ["-drive", f"{more},if=none,id=d{i}", "-device", f"nvme-ns,drive=d{i},bus=nvme0,nsid={i}"]
        bdf, bar_index = NVME_BDF, 0
    elif controller == "nvme":
        devices = ["-drive", drive, "-device", f"nvme,serial={serial},drive=d0,addr={NVME_BDF[3:]}{extra}"]
        bdf, bar_index = NVME_BDF, 0
    elif controller == "ahci":
        devices = ["-drive", drive, "-device", f"ide-hd,drive=d0,bus=ide.0,serial={serial}{extra}"]
        bdf, bar_index = AHCI_BDF, 5
    else:
        raise UsageError(f"unknown controller {controller!r} (nvme, ahci)")
    machine = QtestMachine(devices, trace=trace, memory_mb=memory_mb)
    try:
        fn = machine.pci(bdf)
        fn.assign_bars()
        bar = fn.map_bar(bar_index)
    except BaseException:
        machine.close()
        raise
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def msix(n: int) -> list:  # type: ignore[type-arg]
        from fsproto.hw.interrupts import qtest_msix

        return qtest_msix(machine, fn, bar, n + 1)[1:]

    return Attachment(f"{controller}:qtest:{path}", fn, bar, lambda n: machine.malloc(n, align=4096),
                      [lambda: os.close(fd), machine.close], machine, fd, msix if controller == "nvme" else None)


def uio(bdf: str, bar_index: int, *, force: bool = False) -> Attachment:
    """A function of this machine on uio_pci_generic (or no driver): sysfs BAR, pagemap DMA.

    Raises HardwareNotFound, DeviceOwned (a kernel driver or a mount owns it; unless *force*),
    AccessDenied (no root / lockdown), HardwareError.
    """
    from fsproto.hw.pci import SysfsPci

    fn = SysfsPci(bdf, writable=True, force=force)
    try:
        bar = fn.map_bar(bar_index, writable=True, force=force)
    except BaseException:
        fn.close()
        raise
    return Attachment(f"uio:{fn.bdf}", fn, bar, PinnedHostBuffer, [fn.close, bar.close])


class PinnedHostBuffer(DmaBuffer):
    """Host memory for a device that uses physical addresses (uio): mlock'ed, translated once.

    Translating every page through pagemap on every command costs an open+pread per page
    (measured in the lab: 3.9 MB/s for 128 KiB reads under TCG); the table is built once here.
    mlock keeps the pages resident; it does not stop migration of 4 KiB pages (hardware.md 2.2),
    which is acceptable for bring-up and the lab; reserve hugetlb pages for long unattended runs.
    Raises like :func:`fsproto.hw.memory.malloc` and :func:`~fsproto.hw.memory.vir2phys`.
    """

    def __init__(self, size: int) -> None:
        from fsproto.hw.memory import PAGE, malloc, mpin, vir2phys

        self.host = malloc(size)  # hugetlb pages when enough are reserved (contiguous, never migrated)
        self.size, self.region, self._page = self.host.size, self.host.region, PAGE
        try:
            mpin(self.host)
            self._phys = [vir2phys(self.host.addr + o) for o in range(0, self.size, PAGE)]
        except BaseException:
            self.host.free()
            raise

    def device_addr(self, offset: int = 0) -> int:
        """Raises RegionOutOfRange (outside the buffer), HardwareError (freed)."""
        if self.host.freed:
            raise HardwareError("buffer was freed", device=str(self.host))
        if not 0 <= offset < self.size:
            raise RegionOutOfRange(f"offset outside the {self.size}-byte buffer", device=str(self.host), offset=offset)
        return self._phys[offset // self._page] + offset % self._page

    def free(self) -> None:
        self.host.free()  # munmap also ends the mlock


def vfio(bdf: str, bar_index: int) -> Attachment:
    """A function bound to vfio-pci, DMA through the IOMMU at IOVAs of our own allocator.

    Raises HardwareNotFound (no group / not bound to vfio-pci), AccessDenied, HardwareError.
    """
    from fsproto.hw.vfio import VfioDevice

    dev = VfioDevice(bdf)
    try:
        bar = dev.map_bar(bar_index)
    except BaseException:
        dev.close()
        raise
    return Attachment(f"vfio:{dev.bdf}", dev.pci, bar, dev.malloc, [dev.close],
                      interrupts=lambda n: dev.enable_msix(n + 1)[1:], interrupts_by_default=True)
