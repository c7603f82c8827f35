"""A polled user-space NVMe driver: bring-up, Identify, one I/O queue pair, Read/Write/Flush, shutdown.

References: NVM Express Base Specification 2.0, 3.5.1 (controller initialization) and 3.6
(shutdown); ``shared/specs/hardware.md`` 3.1 (the sequence as SPDK and libvfn do it, checked
against QEMU) and 5 (the state a kernel driver leaves behind: CC.EN=1 after unbinding).

The controller sees three things only, so it runs unchanged on every backend of the hardware
core: a :class:`~fsproto.hw.region.Region` over BAR0, the :class:`~fsproto.hw.pci.PciFunction`
(to turn on memory decode and bus mastering) and an allocator of DMA buffers whose
``device_addr`` is what the controller must be given (guest-physical under qtest, physical
under uio, an IOVA under vfio). See :mod:`fsproto.hw.nvme.attach`.

Register discipline: 64-bit registers (CAP, ASQ, ACQ) are accessed as two aligned 32-bit
accesses, which the spec allows for every controller (some PCIe paths take only 32-bit MMIO);
every other register access is one access of the register's width; doorbells are only written.

Limits: polled completions (no interrupts), one I/O queue pair, one command in flight, PRP data
pointers (no SGLs), 4 KiB controller pages (CAP.MPSMIN must be 0), no metadata/protection
information formats. No explicit memory barriers: the SQE-then-doorbell and phase-then-entry
orders rely on x86's ordering of stores and of loads (qtest serialises everything anyway).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fsproto.errors import CommandTimeout, ControllerError, HardwareNotFound, UsageError
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme import commands as cmd
from fsproto.hw.nvme.commands import IdentifyController, IdentifyNamespace
from fsproto.hw.nvme.queues import Allocator, PrpBuilder, QueuePair
from fsproto.hw.pci import PciFunction
from fsproto.hw.region import Region
from fsproto.hw.regmaps.nvme import NVME, nvme_with_doorbells
from fsproto.hw.regs import RegValue

NVME_CLASS = 0x010802
ADMIN_ENTRIES = 32
IO_ENTRIES = 64
PAGE = 4096


@dataclass(frozen=True)
class Namespace:
    """One active namespace: its id, size in blocks, and block size."""

    nsid: int
    blocks: int
    block_size: int
    identify: IdentifyNamespace


class NvmeController:
    """``NvmeController(bar, pci, alloc, name=...)`` brings the controller up in the constructor.

    ``close()`` shuts it down (CC.SHN) and frees its memory; idempotent; also a context manager.
    *max_transfer* caps one command's data (further capped by MDTS and by the PRP list).
    Raises HardwareNotFound (not an NVMe function), ControllerError (fatal status, unsupported
    page size), CommandTimeout (CSTS.RDY did not follow CC.EN within CAP.TO), CommandError.
    """

    def __init__(self, bar: Region, pci: PciFunction | None, alloc: Allocator, *, name: str | None = None,
                 max_transfer: int = 128 << 10, io_entries: int = IO_ENTRIES) -> None:
        self.name = name or bar.name
        self.bar = bar
        self.pci = pci
        self._alloc = alloc
        self._closed = True
        self.admin: QueuePair | None = None
        self.io: QueuePair | None = None
        self.prp: PrpBuilder | None = None
        self.namespaces: dict[int, Namespace] = {}
        if pci is not None:
            if pci.class_code != NVME_CLASS:
                raise HardwareNotFound(f"class {pci.class_code:06x} is not an NVMe controller (010802)", device=self.name)
            pci.enable_memory()
            pci.enable_bus_master()  # the controller DMAs queues and data (hardware.md 2.4)
        self.cap = RegValue(bar.r32(0x00) | bar.r32(0x04) << 32, NVME["CAP"])
        self.version = RegValue(bar.r32(0x08), NVME["VS"])
        if self.cap == 0xFFFFFFFFFFFFFFFF:
            raise ControllerError("CAP reads all ones: the function is gone or its BAR is not decoded", device=self.name)
        if self.cap.MPSMIN != 0:
            raise ControllerError(f"controller pages start at {4096 << self.cap.MPSMIN} bytes; only 4 KiB is supported",
                                  device=self.name)
        # CAP.TO is the worst case for CSTS.RDY to follow CC.EN, in 500 ms units (3.1).
        self.ready_timeout = max(self.cap.TO, 1) * 0.5
        self.command_timeout = max(self.ready_timeout, 5.0)
        self.regs = nvme_with_doorbells(2, self.cap.DSTRD).bind(bar)
        self.max_entries = self.cap.MQES + 1
        self._closed = False
        try:
            self._bring_up(max_transfer, io_entries)
        except BaseException:
            self._release()
            raise

    # -- bring-up -------------------------------------------------------------------------------
    def _bring_up(self, max_transfer: int, io_entries: int) -> None:
        self.disable()
        admin_entries = min(ADMIN_ENTRIES, self.max_entries)
        self.admin = QueuePair(0, admin_entries, self._alloc, self.regs, device=self.name, fatal=self.fatal_reason)
        self.regs.write("AQA", NVME["AQA"].encode(ASQS=admin_entries - 1, ACQS=admin_entries - 1))
        self._write64(0x28, self.admin.sq_addr)  # ASQ
        self._write64(0x30, self.admin.cq_addr)  # ACQ
        self.regs.write("CC", NVME["CC"].encode(EN=1, CSS=0, MPS=0, AMS=0, SHN=0, IOSQES=6, IOCQES=4))
        self._wait_ready(1)
        self.identify = IdentifyController.parse(self._identify(cmd.CNS_CONTROLLER, 0))
        limit = (1 << self.identify.mdts) * PAGE if self.identify.mdts else max_transfer
        self.prp = PrpBuilder(self._alloc, PAGE)
        self.max_transfer = min(max_transfer, limit, (self.prp.max_pages - 1) * PAGE)
        for nsid in self._active_nsids():
            ns = IdentifyNamespace.parse(self._identify(cmd.CNS_NAMESPACE, nsid))
            if ns.nsze and ns.block_size:
                self.namespaces[nsid] = Namespace(nsid, ns.nsze, ns.block_size, ns)
        # Number of Queues (FID 07h): ask for one pair; the controller may grant more (QEMU: 64).
        granted = self.admin.execute(cmd.ADMIN_SET_FEATURES, timeout=self.command_timeout, admin=True,
                                     cdw10=cmd.FEATURE_NUMBER_OF_QUEUES, cdw11=0).dw0
        if granted & 0xFFFF == 0xFFFF or granted >> 16 == 0xFFFF:
            raise ControllerError(f"Set Features (number of queues) granted {granted:#x}", device=self.name)
        entries = min(io_entries, self.max_entries)
        self.io = QueuePair(1, entries, self._alloc, self.regs, device=self.name, fatal=self.fatal_reason)
        # Create the CQ before the SQ that posts to it (3.3.1); PC=1 (one contiguous page), IEN=0.
        self.admin.execute(cmd.ADMIN_CREATE_CQ, timeout=self.command_timeout, admin=True, prp1=self.io.cq_addr,
                           cdw10=(entries - 1) << 16 | 1, cdw11=1)
        self.admin.execute(cmd.ADMIN_CREATE_SQ, timeout=self.command_timeout, admin=True, prp1=self.io.sq_addr,
                           cdw10=(entries - 1) << 16 | 1, cdw11=1 << 16 | 1)

    def _write64(self, offset: int, value: int) -> None:
        self.bar.w32(offset, value & 0xFFFFFFFF)
        self.bar.w32(offset + 4, value >> 32)

    def _wait_ready(self, rdy: int) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            csts = self.regs.CSTS
            if csts == 0xFFFFFFFF:
                raise ControllerError("CSTS reads all ones: the device is gone", device=self.name)
            if csts.CFS and rdy:
                raise ControllerError("controller fatal status (CSTS.CFS=1) while enabling", device=self.name)
            if csts.RDY == rdy:
                return
            if time.monotonic() > deadline:
                raise CommandTimeout(f"CSTS.RDY did not become {rdy} within CAP.TO = {self.ready_timeout:g} s",
                                     device=self.name)
            time.sleep(0.001)

    def disable(self) -> None:
        """CC.EN=0 and wait for CSTS.RDY=0 (a kernel driver may have left it enabled). Raises CommandTimeout."""
        cc = self.regs.CC
        if cc.EN or self.regs.CSTS.RDY:
            self.regs.write("CC", cc & ~1 & ~(3 << 14))  # EN=0, SHN=0; keep the rest
            self._wait_ready(0)

    def fatal_reason(self) -> str | None:
        """Why the controller cannot work any more (CFS, all-ones), or None."""
        csts = int(self.regs.CSTS)
        if csts == 0xFFFFFFFF:
            return "CSTS reads all ones (device gone)"
        if csts & 2:
            return "CSTS.CFS=1 (controller fatal status)"
        return None

    def _identify(self, cns: int, nsid: int) -> bytes:
        buf = self._alloc(cmd.IDENTIFY_SIZE)
        try:
            assert self.admin is not None
            self.admin.execute(cmd.ADMIN_IDENTIFY, timeout=self.command_timeout, admin=True, nsid=nsid,
                               prp1=buf.device_addr(0), cdw10=cns)
            return buf.read(0, cmd.IDENTIFY_SIZE)
        finally:
            buf.free()

    def _active_nsids(self) -> list[int]:
        if (self.version.MJR, self.version.MNR) >= (1, 1):
            raw = self._identify(cmd.CNS_ACTIVE_NSIDS, 0)
            ids = [int.from_bytes(raw[i : i + 4], "little") for i in range(0, len(raw), 4)]
            return [n for n in ids if n][: 1024]
        return list(range(1, min(self.identify.nn, 1024) + 1))

    # -- I/O ----------------------------------------------------------------------------------------
    def namespace(self, nsid: int) -> Namespace:
        """Raises HardwareNotFound naming the active namespaces."""
        try:
            return self.namespaces[nsid]
        except KeyError:
            have = ", ".join(map(str, self.namespaces)) or "none"
            raise HardwareNotFound(f"no active namespace {nsid} (active: {have})", device=self.name) from None

    def _io(self, opcode: int, nsid: int, lba: int, count: int, buf: DmaBuffer, offset: int) -> None:
        self._check_open()
        ns = self.namespace(nsid)
        length = count * ns.block_size
        if not 1 <= count <= 0x10000 or length > self.max_transfer:
            raise UsageError(f"{count} blocks is not 1..{self.max_transfer // ns.block_size} per command",
                             device=self.name, lba=lba)
        assert self.io is not None and self.prp is not None
        prp1, prp2 = self.prp.build(buf, offset, length)
        self.io.execute(opcode, timeout=self.command_timeout, admin=False, lba=lba, nsid=nsid, prp1=prp1, prp2=prp2,
                        cdw10=lba & 0xFFFFFFFF, cdw11=lba >> 32 & 0xFFFFFFFF, cdw12=count - 1)

    def read(self, nsid: int, lba: int, count: int, buf: DmaBuffer, offset: int = 0) -> None:
        """Read *count* blocks into *buf* at *offset*. The LBA range is the controller's to check.

        Raises LbaOutOfRange (SC 80h), CommandError, CommandTimeout, UsageError (too long).
        """
        self._io(cmd.NVM_READ, nsid, lba, count, buf, offset)

    def write(self, nsid: int, lba: int, count: int, buf: DmaBuffer, offset: int = 0) -> None:
        """Write *count* blocks from *buf* at *offset*. Raises like :meth:`read`."""
        self._io(cmd.NVM_WRITE, nsid, lba, count, buf, offset)

    def flush(self, nsid: int) -> None:
        """Commit the volatile write cache of *nsid*. Raises CommandError, CommandTimeout."""
        self._check_open()
        assert self.io is not None
        self.io.execute(cmd.NVM_FLUSH, timeout=self.command_timeout, admin=False, nsid=nsid)

    def alloc(self, size: int) -> DmaBuffer:
        """DMA memory from this controller's allocator (for callers' data buffers)."""
        return self._alloc(size)

    # -- shutdown -----------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ControllerError("the controller is shut down", device=self.name)

    def shutdown(self) -> None:
        """Delete the I/O queues, then a normal shutdown (CC.SHN=01, wait CSTS.SHST=10), then CC.EN=0.

        Raises CommandTimeout when SHST does not reach "complete" within CAP.TO.
        """
        if self.io is not None and self.admin is not None and not self.fatal_reason():
            try:
                self.admin.execute(cmd.ADMIN_DELETE_SQ, timeout=self.command_timeout, admin=True, cdw10=1)
                self.admin.execute(cmd.ADMIN_DELETE_CQ, timeout=self.command_timeout, admin=True, cdw10=1)
            except ControllerError:
                pass  # shutting down anyway: CC.SHN below tells the controller to stop
        if self.regs.CC.EN:
            self.regs.set("CC", SHN=1)
            deadline = time.monotonic() + self.ready_timeout
            while self.regs.CSTS.SHST != 2:
                if time.monotonic() > deadline or self.fatal_reason():
                    raise CommandTimeout(f"shutdown did not complete within {self.ready_timeout:g} s", device=self.name)
                time.sleep(0.001)
            self.disable()

    def _release(self) -> None:
        self._closed = True
        for thing in (self.io, self.admin, self.prp):
            if thing is not None:
                thing.free()
        self.io = self.admin = None
        self.prp = None

    def close(self) -> None:
        """Orderly shutdown, then free the queues; idempotent."""
        if self._closed:
            return
        try:
            self.shutdown()
        finally:
            self._release()

    def __enter__(self) -> "NvmeController":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __str__(self) -> str:
        ident = getattr(self, "identify", None)
        what = f"{ident.model} SN {ident.serial}" if ident else "not identified"
        return f"NvmeController({self.name}, {what}, {len(self.namespaces)} namespace(s))"

    __repr__ = __str__
