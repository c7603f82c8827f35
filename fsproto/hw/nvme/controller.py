"""A user-space NVMe driver: bring-up, Identify, several I/O queue pairs with many commands in
flight, Read/Write/Flush/Write Zeroes/Dataset Management, abort and reset, shutdown.

References: NVM Express Base Specification 2.0, 3.5.1 (controller initialization), 3.6
(shutdown), 3.7.2 (controller reset: CC.EN 1->0 deletes every I/O queue and ends every
outstanding command), 5.1 (Abort: CDW10 = CID << 16 | SQID; DW0 bit 0 = 1 "not aborted"), 5.27.1.5
(Number of Queues); NVM Command Set 3.3.3 (Dataset Management), 3.3.7 (Write Zeroes);
``shared/specs/hardware.md`` 3.1 and 5 (CC.EN=1 left behind by a kernel driver).

The controller sees three things only, so it runs unchanged on every backend of the hardware
core: a :class:`~fsproto.hw.region.Region` over BAR0, the :class:`~fsproto.hw.pci.PciFunction`
and an allocator of DMA buffers whose ``device_addr`` is what the controller must be given
(guest-physical under qtest, physical under uio, an IOVA under vfio). Interrupt waiters (one
per I/O queue, MSI-X vector q for queue q) come from the attachment when the backend can
deliver them; otherwise completions are polled.

:meth:`NvmeController.run` executes a list of :class:`IoRequest` with as many in flight as the
queues hold: pushed round robin over the I/O queues, one doorbell per queue per round,
completions reaped in batches, in whatever order the controller finishes them. A command past
its deadline is aborted; if the abort does not end it the controller is reset (and the queues
recreated), so a timeout never leaves a command behind. CSTS.CFS ends every wait at once with
one ControllerError, and every later call fails the same way without touching the device.

Register discipline: 64-bit registers (CAP, ASQ, ACQ) as two aligned 32-bit accesses; every
other register access one access of its width; doorbells only written.

Limits: 4 KiB controller pages (CAP.MPSMIN must be 0), queues of one page (64 entries), no
metadata/protection information formats. No explicit memory barriers: the SQE-then-doorbell
and phase-then-entry orders rely on x86's store and load ordering (qtest serialises anyway).
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass, field
from typing import Sequence

from fsproto.errors import CommandTimeout, ControllerError, HardwareNotFound, UsageError
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme import commands as cmd
from fsproto.hw.nvme.commands import Completion, IdentifyController, IdentifyNamespace, status_error
from fsproto.hw.nvme.datapointers import PrpBuilder
from fsproto.hw.nvme.queues import Allocator, Interrupt, QueuePair
from fsproto.hw.pci import PciFunction
from fsproto.hw.region import Region
from fsproto.hw.regmaps.nvme import NVME, nvme_with_doorbells
from fsproto.hw.regs import RegValue

NVME_CLASS = 0x010802
ADMIN_ENTRIES = 32
IO_ENTRIES = 64
IO_QUEUES = 4
PAGE = 4096


@dataclass(frozen=True)
class Namespace:
    """One active namespace: its id, size in blocks, and block size."""

    nsid: int
    blocks: int
    block_size: int
    identify: IdentifyNamespace


@dataclass
class IoRequest:
    """One NVM command for :meth:`NvmeController.run`; ``completion`` is filled in."""

    opcode: int
    nsid: int
    lba: int | None = None
    data: tuple[DmaBuffer, int, int] | None = None  # (buffer, offset, length)
    pointers: tuple[int, int, int] | None = None  # prepared (PSDT, DW6-7, DW8-9), instead of data
    fields: dict[str, int] = field(default_factory=dict)  # cdw10...
    completion: Completion | None = None


class NvmeController:
    """``NvmeController(bar, pci, alloc, name=...)`` brings the controller up in the constructor.

    *io_queues* I/O queue pairs of *io_entries* entries are asked for (fewer when the controller
    grants fewer, or when *interrupts* holds fewer waiters); *data_pointers* is ``"auto"`` (when
    Identify SGLS reports SGLs: one Data Block descriptor for contiguous data, PRPs for scattered
    pages), ``"prp"`` or ``"sgl"`` (SGLs always, with segments for scattered pages). ``close()`` shuts it down (CC.SHN)
    and frees its memory; idempotent; also a context manager. *max_transfer* caps one command's
    data (further capped by MDTS and by one list page).
    Raises HardwareNotFound (not an NVMe function), ControllerError (fatal status, unsupported
    page size, SGLs asked of a controller without them), CommandTimeout, CommandError.
    """

    def __init__(self, bar: Region, pci: PciFunction | None, alloc: Allocator, *, name: str | None = None,
                 max_transfer: int = 128 << 10, io_entries: int = IO_ENTRIES, io_queues: int = IO_QUEUES,
                 data_pointers: str = "auto", interrupts: Sequence[Interrupt] | None = None,
                 command_timeout: float | None = None) -> None:
        if data_pointers not in ("auto", "prp", "sgl"):
            raise UsageError(f"data_pointers={data_pointers!r}: auto, prp or sgl")
        self.name = name or bar.name
        self.bar = bar
        self.pci = pci
        self._alloc = alloc
        self._closed = True
        self.failed: str | None = None
        self.admin: QueuePair | None = None
        self.queues: list[QueuePair] = []
        self.prp: PrpBuilder | None = None
        self.namespaces: dict[int, Namespace] = {}
        self.interrupts = list(interrupts) if interrupts else []
        self.resets = self.aborts = 0
        self._rr = 0
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
        self.command_timeout = command_timeout or max(self.ready_timeout, 5.0)
        self.max_entries = self.cap.MQES + 1
        self._closed = False
        try:
            self._bring_up(max_transfer, io_entries, io_queues, data_pointers)
        except BaseException:
            self._release()
            raise

    # -- bring-up -------------------------------------------------------------------------------
    def _bring_up(self, max_transfer: int, io_entries: int, io_queues: int, data_pointers: str) -> None:
        if self.interrupts:
            io_queues = min(io_queues, len(self.interrupts))
        self.regs = nvme_with_doorbells(io_queues + 1, self.cap.DSTRD).bind(self.bar)
        self.disable()
        admin_entries = min(ADMIN_ENTRIES, self.max_entries)
        self.admin = QueuePair(0, admin_entries, self._alloc, self.regs, device=self.name, fatal=self.fatal_reason,
                               dstrd=self.cap.DSTRD)
        self._enable()
        self.identify = IdentifyController.parse(self._identify(cmd.CNS_CONTROLLER, 0))
        limit = (1 << self.identify.mdts) * PAGE if self.identify.mdts else max_transfer
        self.prp = PrpBuilder(self._alloc, PAGE)
        self.max_transfer = min(max_transfer, limit, (self.prp.max_pages - 1) * PAGE)
        support = self.identify.sgl_support
        if data_pointers == "sgl" and not support:
            raise ControllerError("SGLs asked for, but Identify SGLS reports none", device=self.name)
        self.sgl = support if data_pointers != "prp" else 0
        for nsid in self._active_nsids():
            ns = IdentifyNamespace.parse(self._identify(cmd.CNS_NAMESPACE, nsid))
            if ns.nsze and ns.block_size:
                self.namespaces[nsid] = Namespace(nsid, ns.nsze, ns.block_size, ns)
        entries = min(io_entries, self.max_entries)
        count = self._number_of_queues(io_queues)
        for qid in range(1, count + 1):
            irq = self.interrupts[qid - 1] if self.interrupts else None
            self.queues.append(QueuePair(qid, entries, self._alloc, self.regs, device=self.name,
                                         fatal=self.fatal_reason, data_pages=True, sgl=self.sgl, irq=irq,
                                         dstrd=self.cap.DSTRD, sgl_segments=data_pointers == "sgl"))
        self._create_queues()

    def _enable(self) -> None:
        assert self.admin is not None
        n = self.admin.entries
        self.regs.write("AQA", NVME["AQA"].encode(ASQS=n - 1, ACQS=n - 1))
        self._write64(0x28, self.admin.sq_addr)  # ASQ
        self._write64(0x30, self.admin.cq_addr)  # ACQ
        self.regs.write("CC", NVME["CC"].encode(EN=1, CSS=0, MPS=0, AMS=0, SHN=0, IOSQES=6, IOCQES=4))
        self._wait_ready(1)

    def _number_of_queues(self, wanted: int) -> int:
        """Set Features Number of Queues (FID 07h, 0-based counts); how many pairs to create."""
        assert self.admin is not None
        granted = self.admin.execute(cmd.ADMIN_SET_FEATURES, timeout=self.command_timeout, admin=True,
                                     cdw10=cmd.FEATURE_NUMBER_OF_QUEUES, cdw11=(wanted - 1) << 16 | (wanted - 1)).dw0
        if granted & 0xFFFF == 0xFFFF or granted >> 16 == 0xFFFF:
            raise ControllerError(f"Set Features (number of queues) granted {granted:#x}", device=self.name)
        return max(1, min(wanted, (granted & 0xFFFF) + 1, (granted >> 16) + 1))

    def _create_queues(self) -> None:
        assert self.admin is not None
        for q in self.queues:
            # The CQ before the SQ that posts to it (3.3.1); PC=1 (one contiguous page); with an
            # interrupt waiter IEN=1 and MSI-X vector = qid (vector 0 stays the admin queue's).
            ien = 1 << 1 | q.qid << 16 if q.irq is not None else 0
            self.admin.execute(cmd.ADMIN_CREATE_CQ, timeout=self.command_timeout, admin=True, prp1=q.cq_addr,
                               cdw10=(q.entries - 1) << 16 | q.qid, cdw11=ien | 1)
            self.admin.execute(cmd.ADMIN_CREATE_SQ, timeout=self.command_timeout, admin=True, prp1=q.sq_addr,
                               cdw10=(q.entries - 1) << 16 | q.qid, cdw11=q.qid << 16 | 1)

    @property
    def io(self) -> QueuePair | None:
        """The first I/O queue pair (what single-command callers use)."""
        return self.queues[0] if self.queues else None

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
        csts = int(self.bar.r32(0x1C))
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

    # -- requests ---------------------------------------------------------------------------------
    def namespace(self, nsid: int) -> Namespace:
        """Raises HardwareNotFound naming the active namespaces."""
        try:
            return self.namespaces[nsid]
        except KeyError:
            have = ", ".join(map(str, self.namespaces)) or "none"
            raise HardwareNotFound(f"no active namespace {nsid} (active: {have})", device=self.name) from None

    def rw_request(self, opcode: int, nsid: int, lba: int, count: int, buf: DmaBuffer | None = None,
                   offset: int = 0, *, pointers: tuple[int, int, int] | None = None) -> IoRequest:
        """A Read or Write of *count* blocks at *lba*, data at *offset* in *buf* (or *pointers*).

        Raises HardwareNotFound (namespace), UsageError (more than one command may carry, or
        neither/both of *buf* and *pointers*).
        """
        ns = self.namespace(nsid)
        length = count * ns.block_size
        if not 1 <= count <= 0x10000 or length > self.max_transfer:
            raise UsageError(f"{count} blocks is not 1..{self.max_transfer // ns.block_size} per command",
                             device=self.name, lba=lba)
        if (buf is None) == (pointers is None):
            raise UsageError("a Read/Write needs a buffer or prepared pointers (one of them)", device=self.name, lba=lba)
        data = (buf, offset, length) if buf is not None else None
        return IoRequest(opcode, nsid, lba, data, pointers,
                         {"cdw10": lba & 0xFFFFFFFF, "cdw11": lba >> 32 & 0xFFFFFFFF, "cdw12": count - 1})

    def run(self, requests: Sequence[IoRequest], *, queues: Sequence[QueuePair] | None = None) -> None:
        """Execute *requests* with as many in flight as the queues hold; wait for all of them.

        Raises (after every command has ended) the first failure by request order:
        LbaOutOfRange/CommandError for an error status, CommandTimeout (the command was aborted,
        or the controller reset), ControllerError (fatal status: at once, nothing is waited for).
        """
        self._check_open()
        qs = list(queues) if queues is not None else self.queues
        self._rr = (self._rr + 1) % len(qs)
        pending = list(range(len(requests)))[::-1]
        owner: dict[tuple[int, int], int] = {}
        errors: dict[int, Exception] = {}
        timeout = self.command_timeout
        try:
            while pending or owner:
                # Fill: round robin over the queues, each rung once for everything pushed.
                # Each batch starts on the next queue round robin and spills into the following
                # ones only when it is full: one doorbell and one reap pass per queue touched.
                pushed = False
                for step in range(len(qs)):
                    q = qs[(self._rr + step) % len(qs)]
                    for _ in range(min(q.space, len(pending))):
                        i = pending.pop()
                        r = requests[i]
                        if r.pointers is not None:
                            psdt, p1, p2 = r.pointers
                            cid = q.push(r.opcode, timeout=timeout, lba=r.lba, nsid=r.nsid, prp1=p1, prp2=p2,
                                         psdt=psdt, **r.fields)
                        else:
                            cid = q.push(r.opcode, timeout=timeout, lba=r.lba, data=r.data, nsid=r.nsid, **r.fields)
                        owner[(q.qid, cid)] = i
                        pushed = True
                    q.ring()
                # Reap: every queue with something in flight; wait on one only if none had anything.
                got = False
                for q in qs:
                    if q.inflight:
                        for cqe in q.reap():
                            got = True
                            self._complete(requests, owner.pop((q.qid, cqe.cid)), q, cqe, errors)
                if got or not owner:
                    continue
                busy = [q for q in qs if q.inflight]
                deadline = min(t.deadline for q in busy for t in q.inflight.values())
                waiter = busy[0] if len(busy) == 1 or busy[0].irq is None else None
                if waiter is not None:
                    for cqe in waiter.wait(deadline):
                        self._complete(requests, owner.pop((waiter.qid, cqe.cid)), waiter, cqe, errors)
                else:
                    self._wait_any(busy, deadline)
                now = time.monotonic()
                for q in busy:
                    for cid in q.expired(now):
                        if (q.qid, cid) not in owner:
                            continue  # ended by a reset during this sweep
                        resets = self.resets
                        err = self.recover(q, cid)
                        errors[owner.pop((q.qid, cid))] = err
                        if self.resets != resets:  # a reset ended every command in flight
                            for key in list(owner):
                                errors[owner.pop(key)] = err
        except ControllerError as e:
            if self.fatal_reason():
                self.failed = self.failed or str(e)
            raise
        if errors:
            raise errors[min(errors)]

    def _complete(self, requests: Sequence[IoRequest], i: int, q: QueuePair, cqe: Completion,
                  errors: dict[int, Exception]) -> None:
        q.finished.pop(cqe.cid, None)  # claimed here, not by poll()
        r = requests[i]
        r.completion = cqe
        if not cqe.ok:
            errors[i] = status_error(cqe, opcode=r.opcode, admin=False, device=self.name, lba=r.lba)

    def _wait_any(self, busy: list[QueuePair], deadline: float) -> None:
        """Sleep until one of *busy* may have a completion: their interrupts, else a short nap."""
        irqs = [q.irq for q in busy if q.irq is not None and hasattr(q.irq, "fileno")]
        if len(irqs) == len(busy):
            if not any([irq.consume() for irq in irqs]):  # an interrupt since the last reap: no sleep
                select.select([irq.fileno() for irq in irqs], [], [], max(0.0, min(deadline - time.monotonic(), 0.25)))
                for irq in irqs:
                    irq.consume()  # the eventfd counts: read it, or select never blocks again
        else:
            time.sleep(0.0002)
        why = self.fatal_reason()
        if why:
            raise ControllerError(f"controller failed with commands in flight: {why}", device=self.name)

    # -- error recovery -------------------------------------------------------------------------
    def abort(self, queue: QueuePair, cid: int) -> bool:
        """Send Abort for command *cid* of *queue*; True when the controller says it aborted it.

        The aborted command still completes (status 07h, "command abort requested") on its own
        queue. Raises CommandError, CommandTimeout (the Abort itself did not complete).
        """
        assert self.admin is not None
        self.aborts += 1
        cqe = self.admin.execute(cmd.ADMIN_ABORT, timeout=self.command_timeout, admin=True,
                                 cdw10=cid << 16 | queue.qid)
        return cqe.dw0 & 1 == 0

    def recover(self, queue: QueuePair, cid: int) -> CommandTimeout:
        """Command *cid* of *queue* is past its deadline: Abort it; if it still does not end
        within a grace period, reset the controller. Returns the error that describes what
        happened (for the caller to raise). Raises ControllerError when the reset fails."""
        t = queue.inflight[cid]
        what = cmd.OPCODE_NAMES.get((t.admin, t.opcode), f"opcode {t.opcode:#04x}")
        try:
            self.abort(queue, cid)
            end = queue.poll(cid, max(1.0, min(self.command_timeout, 5.0)))  # the abort's grace period
            return CommandTimeout(f"{what} did not complete within {self.command_timeout:g} s and was aborted "
                                  f"({end.describe()})", device=self.name, lba=t.lba)
        except CommandTimeout:
            pass
        self.reset()
        return CommandTimeout(f"{what} did not complete within {self.command_timeout:g} s, nor after an Abort; "
                              "the controller was reset", device=self.name, lba=t.lba)

    def reset(self) -> None:
        """Controller reset: CC.EN=0 (which ends every command and deletes the I/O queues), then
        the admin queue, enable, Number of Queues and the I/O queues again (Identify is kept).

        Raises ControllerError (fatal status: the controller stays failed), CommandTimeout.
        """
        self._check_open()
        self.resets += 1
        assert self.admin is not None
        self.disable()
        for q in [self.admin, *self.queues]:
            q.reset()
        self._enable()
        self._number_of_queues(len(self.queues))
        self._create_queues()

    # -- single commands ------------------------------------------------------------------------
    def read(self, nsid: int, lba: int, count: int, buf: DmaBuffer, offset: int = 0) -> None:
        """Read *count* blocks into *buf* at *offset*. The LBA range is the controller's to check.

        Raises LbaOutOfRange (SC 80h), CommandError, CommandTimeout, UsageError (too long).
        """
        self.run([self.rw_request(cmd.NVM_READ, nsid, lba, count, buf, offset)], queues=self.queues[:1])

    def write(self, nsid: int, lba: int, count: int, buf: DmaBuffer, offset: int = 0) -> None:
        """Write *count* blocks from *buf* at *offset*. Raises like :meth:`read`."""
        self.run([self.rw_request(cmd.NVM_WRITE, nsid, lba, count, buf, offset)], queues=self.queues[:1])

    def flush(self, nsid: int) -> None:
        """Commit the volatile write cache of *nsid*. Raises CommandError, CommandTimeout."""
        self.run([IoRequest(cmd.NVM_FLUSH, nsid)], queues=self.queues[:1])

    def write_zeroes(self, nsid: int, lba: int, count: int) -> None:
        """Write Zeroes over *count* blocks (split into commands of at most 65536 blocks).

        Raises ControllerError when ONCS does not list Write Zeroes, CommandError, LbaOutOfRange.
        """
        if not self.identify.oncs & cmd.ONCS_WRITE_ZEROES:
            raise ControllerError("the controller does not support Write Zeroes (ONCS bit 3)", device=self.name)
        self.run([IoRequest(cmd.NVM_WRITE_ZEROES, nsid, s, None, None,
                            {"cdw10": s & 0xFFFFFFFF, "cdw11": s >> 32, "cdw12": min(0x10000, lba + count - s) - 1})
                  for s in range(lba, lba + count, 0x10000)])

    def deallocate(self, nsid: int, ranges: Sequence[tuple[int, int]]) -> None:
        """Dataset Management with AD (trim) of *ranges* = [(lba, count), ...], 256 per command.

        Raises ControllerError when ONCS does not list Dataset Management, CommandError.
        """
        if not self.identify.oncs & cmd.ONCS_DSM:
            raise ControllerError("the controller does not support Dataset Management (ONCS bit 2)", device=self.name)
        split = [(s, min(0xFFFFFFFF, lba + n - s)) for lba, n in ranges for s in range(lba, lba + n, 0xFFFFFFFF)]
        buf = self._alloc(PAGE)
        try:
            for first in range(0, len(split), cmd.DSM_MAX_RANGES):
                chunk = split[first : first + cmd.DSM_MAX_RANGES]
                buf.write(0, b"".join(cmd.dsm_range(s, n) for s, n in chunk))
                self.run([IoRequest(cmd.NVM_DSM, nsid, chunk[0][0], (buf, 0, len(chunk) * cmd.DSM_RANGE_SIZE), None,
                                    {"cdw10": len(chunk) - 1, "cdw11": cmd.DSM_DEALLOCATE})], queues=self.queues[:1])
        finally:
            buf.free()

    def alloc(self, size: int) -> DmaBuffer:
        """DMA memory from this controller's allocator (for callers' data buffers)."""
        return self._alloc(size)

    # -- shutdown -----------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ControllerError("the controller is shut down", device=self.name)
        if self.failed:
            raise ControllerError(f"the controller has failed: {self.failed}", device=self.name)

    def shutdown(self) -> None:
        """Delete the I/O queues, then a normal shutdown (CC.SHN=01, wait CSTS.SHST=10), then CC.EN=0.

        A failed controller (CSTS.CFS) is only disabled. Raises CommandTimeout when SHST does
        not reach "complete" within CAP.TO.
        """
        if self.fatal_reason() or self.failed:
            try:
                self.disable()
            except ControllerError:
                pass
            return
        if self.queues and self.admin is not None:
            try:
                for q in reversed(self.queues):
                    self.admin.execute(cmd.ADMIN_DELETE_SQ, timeout=self.command_timeout, admin=True, cdw10=q.qid)
                    self.admin.execute(cmd.ADMIN_DELETE_CQ, timeout=self.command_timeout, admin=True, cdw10=q.qid)
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
        for thing in (*self.queues, self.admin, self.prp):
            if thing is not None:
                thing.free()
        self.queues = []
        self.admin = None
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
        return f"NvmeController({self.name}, {what}, {len(self.namespaces)} namespace(s), {len(self.queues)} I/O queue(s))"

    __repr__ = __str__
