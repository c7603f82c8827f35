"""NVMe queue pairs with many commands in flight: a submission ring, a completion ring with phase
tags, their doorbells, command trackers, and completions reaped in batches.

References: NVM Express Base Specification 2.0, 3.3.1 (queue rings, head/tail: an SQ of N
entries holds N-1 commands), 4.1 (phase tag: the controller inverts P on every pass, the CQ
starts zeroed so the first pass has P=1), 4.6 (CQE: SQ head pointer, CID; completions may come
in any order); ``shared/specs/hardware.md`` 3.1. SPDK and libvfn keep one tracker per command
identifier the same way.

Submission is split from the doorbell: :meth:`QueuePair.push` places an entry, :meth:`ring`
writes the tail doorbell once for everything pushed since. :meth:`reap` consumes every new
completion in one pass and writes the CQ head doorbell once. Every doorbell write is one 32-bit
store (never read, never read-modify-written). Completions are found by their phase bits in one
copy of the ring, then the new entries are copied again before they are decoded, so an entry
seen half-written in the first copy is never decoded.

Each command identifier owns one page of data-pointer memory (PRP list or SGL segment, see
:mod:`fsproto.hw.nvme.datapointers`), so the pointers of commands in flight never share memory.
An *irq* waiter (an MSI-X eventfd under VFIO, a message in guest RAM under qtest; see
:mod:`fsproto.hw.interrupts`) replaces the back-off sleeps while the ring is empty.

Limits: queue memory is one page each (at most 64 entries per SQ); one CQ per SQ.
"""

from __future__ import annotations

import struct
import time
from typing import Callable, Protocol

from fsproto.errors import CommandTimeout, ControllerError, UsageError
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme.commands import CQE_SIZE, PSDT_PRP, PSDT_SGL, SQE_SIZE, Completion, sqe, status_error
from fsproto.hw.nvme.datapointers import PrpBuilder, prp_pointers, sgl_pointers
from fsproto.hw.regmaps.nvme import nvme_doorbell_offset
from fsproto.hw.regs import Regs

Allocator = Callable[[int], DmaBuffer]  # (size) -> zeroed, page-aligned DMA memory
PAGE = 4096
FATAL_CHECK_EVERY = 64  # empty polls between two CSTS reads (a CSTS read is a register access)

__all__ = ["Allocator", "Interrupt", "PrpBuilder", "QueuePair", "Tracker"]


class Interrupt(Protocol):
    """What a queue waits on when its ring is empty (fsproto.hw.interrupts)."""

    count: int

    def wait(self, timeout: float) -> bool:
        """True when the vector fired (and consume it), False after *timeout* seconds."""


class Tracker:
    """One command in flight: what it was, when it must be done."""

    __slots__ = ("opcode", "lba", "deadline", "admin", "seq")

    def __init__(self, opcode: int, lba: int | None, deadline: float, admin: bool, seq: int) -> None:
        self.opcode, self.lba, self.deadline, self.admin, self.seq = opcode, lba, deadline, admin, seq


class QueuePair:
    """Submission queue *qid* and its completion queue, one page of DMA memory each.

    *data_pages* gives every command identifier a page for its PRP list / SGL segment (I/O
    queues); *sgl* (0 none, 1 byte-aligned, 2 dword-aligned: Identify SGLS) makes data
    pointers SGLs instead of PRPs (*sgl_segments* False: only one-run SGLs, PRPs for scattered
    data). ``fatal()`` is called while polling so a dead controller
    (CSTS.CFS) ends a wait at once. Raises (from :meth:`execute`) CommandError/LbaOutOfRange for
    an error status, CommandTimeout, ControllerError (fatal status, an unknown completion).
    """

    def __init__(self, qid: int, entries: int, alloc: Allocator, regs: Regs, *, device: str,
                 fatal: Callable[[], str | None], data_pages: bool = False, sgl: int = 0,
                 irq: Interrupt | None = None, dstrd: int = 0, sgl_segments: bool = True) -> None:
        if not 2 <= entries <= PAGE // SQE_SIZE:
            raise UsageError(f"queue of {entries} entries does not fit one page (2..{PAGE // SQE_SIZE})")
        self.qid, self.entries, self.device, self.sgl, self.irq = qid, entries, device, sgl, irq
        self.sgl_segments = sgl_segments
        self.sq = alloc(entries * SQE_SIZE)
        self.cq: DmaBuffer | None = None
        self.lists: DmaBuffer | None = None
        try:
            self.cq = alloc(entries * CQE_SIZE)
            if data_pages:
                self.lists = alloc((entries - 1) * PAGE)
        except BaseException:
            self.free()
            raise
        bar = regs.region
        sq_bell = regs.base + nvme_doorbell_offset(qid, completion=False, dstrd=dstrd)
        cq_bell = regs.base + nvme_doorbell_offset(qid, completion=True, dstrd=dstrd)
        self._ring_sq = lambda v: bar.w32(sq_bell, v)  # noqa: E731 - one 32-bit store each
        self._ring_cq = lambda v: bar.w32(cq_bell, v)  # noqa: E731
        self._fatal = fatal
        self._cq_bytes = entries * CQE_SIZE
        self.commands = 0  # submitted, ever
        self.peak = 0  # most commands in flight at once, ever
        self.sq_doorbells = self.cq_doorbells = 0
        self.reset()

    def reset(self) -> None:
        """Forget every command and zero the rings (after a controller reset or at creation)."""
        self.sq.fill(0)
        assert self.cq is not None
        self.cq.fill(0)
        self.sq_tail = 0
        self.sq_head = 0  # as last reported by the controller in a CQE
        self.cq_head = 0
        self.phase = 1  # expected phase of the next new entry (first pass: 1)
        self._unrung = 0
        self._free = list(range(self.entries - 1, 0, -1))  # CIDs 1..entries-1: at most N-1 in flight
        self.inflight: dict[int, Tracker] = {}
        self.finished: dict[int, Completion] = {}  # reaped but not yet claimed by poll()
        self.out_of_order = 0  # completions that overtook an older command of this queue

    @property
    def sq_addr(self) -> int:
        return self.sq.device_addr(0)

    @property
    def cq_addr(self) -> int:
        assert self.cq is not None
        return self.cq.device_addr(0)

    @property
    def space(self) -> int:
        """Commands that can be pushed now (free identifiers; the SQ then has room, 3.3.1)."""
        return len(self._free)

    # -- submission ---------------------------------------------------------------------------
    def push(self, opcode: int, *, timeout: float, admin: bool = False, lba: int | None = None,
             data: tuple[DmaBuffer, int, int] | None = None, pointers: tuple[int, int] | None = None,
             **fields: int) -> int:
        """Place one command in the SQ (no doorbell yet: :meth:`ring`); returns its CID.

        *data* = (buffer, offset, length) has its PRPs or SGL built into the command's own
        page; *pointers* = (PRP1, PRP2) prepared by the caller. Raises ControllerError (no room),
        UsageError/HardwareError (bad buffer).
        """
        if not self._free:
            raise ControllerError(f"submission queue {self.qid} is full", device=self.device)
        cid = self._free.pop()
        self.finished.pop(cid, None)  # an unclaimed completion of the identifier's previous use
        psdt = fields.pop("psdt", PSDT_PRP)
        try:
            if data is not None:
                buf, offset, length = data
                assert self.lists is not None, "data pointers need a queue with data pages"
                page_off = (cid - 1) * PAGE
                sgl = sgl_pointers(buf, offset, length, PAGE, self.lists, page_off, dword_aligned=self.sgl == 2,
                                   segments=self.sgl_segments) if self.sgl else None
                if sgl is not None:
                    fields["prp1"], fields["prp2"] = sgl
                    psdt = PSDT_SGL
                else:
                    fields["prp1"], fields["prp2"] = prp_pointers(buf, offset, length, PAGE, self.lists, page_off)
            elif pointers is not None:
                fields["prp1"], fields["prp2"] = pointers
            self.sq.write(self.sq_tail * SQE_SIZE, sqe(opcode, cid, psdt=psdt, **fields))
        except BaseException:
            self._free.append(cid)
            raise
        self.inflight[cid] = Tracker(opcode, lba, time.monotonic() + timeout, admin, self.commands)
        self.sq_tail = (self.sq_tail + 1) % self.entries
        self._unrung += 1
        self.commands += 1
        self.peak = max(self.peak, len(self.inflight))
        return cid

    def ring(self) -> None:
        """Write the SQ tail doorbell once for every entry pushed since the last ring."""
        if self._unrung:
            self._ring_sq(self.sq_tail)
            self._unrung = 0
            self.sq_doorbells += 1

    def submit(self, opcode: int, *, timeout: float = 60.0, **fields: int) -> int:
        """Push and ring one command; returns its CID (bring-up and hand-built commands)."""
        cid = self.push(opcode, timeout=timeout, **fields)
        self.ring()
        return cid

    # -- completion ---------------------------------------------------------------------------
    def _new_entries(self, ring: bytes) -> int:
        n, head, phase = 0, self.cq_head, self.phase
        while n < self.entries:
            if ring[head * CQE_SIZE + 14] & 1 != phase:  # DW3 bit 16: byte 14, bit 0
                break
            n += 1
            head += 1
            if head == self.entries:
                head, phase = 0, phase ^ 1
        return n

    def reap(self) -> list[Completion]:
        """Consume every new completion (one CQ head doorbell write for all of them).

        Raises ControllerError for a completion of no command in flight or of another SQ.
        """
        assert self.cq is not None
        n = self._new_entries(self.cq.read(0, self._cq_bytes))
        if not n:
            return []
        ring = self.cq.read(0, self._cq_bytes)  # the n entries were complete before this copy
        out: list[Completion] = []
        for _ in range(n):
            dw0, _dw1, dw2, dw3 = struct.unpack_from("<IIII", ring, self.cq_head * CQE_SIZE)
            cqe = Completion.from_words(dw0, dw2, dw3)
            self.cq_head += 1
            if self.cq_head == self.entries:  # wrap: the controller inverts P on its next pass
                self.cq_head = 0
                self.phase ^= 1
            out.append(cqe)
        self.sq_head = out[-1].sq_head
        self._ring_cq(self.cq_head)
        self.cq_doorbells += 1
        seqs = []
        for cqe in out:
            if cqe.sq_id != self.qid or cqe.cid not in self.inflight:
                raise ControllerError(f"completion for command {cqe.cid} on SQ {cqe.sq_id}, which queue {self.qid} "
                                      "did not submit", device=self.device)
            seqs.append(self.inflight.pop(cqe.cid).seq)
            self._free.append(cqe.cid)
            self.finished[cqe.cid] = cqe
        # Count completions that overtook a command submitted before them (still in flight, or
        # completed later in this same pass).
        low = min(t.seq for t in self.inflight.values()) if self.inflight else 1 << 62
        for seq in reversed(seqs):
            if seq > low:
                self.out_of_order += 1
            low = min(low, seq)
        return out

    def wait(self, deadline: float) -> list[Completion]:
        """Reap, waiting until something completes or *deadline* (monotonic) passes ([]).

        Between empty polls: the interrupt when there is one, else short back-off sleeps; every
        few polls CSTS is checked. Raises ControllerError (fatal status), like :meth:`reap`.
        """
        spins = 0
        quiet = False  # the last interrupt wait ended without an interrupt
        while True:
            got = self.reap()
            if got:
                return got
            spins += 1
            if spins % FATAL_CHECK_EVERY == 0 or quiet:
                why = self._fatal()
                if why:
                    raise ControllerError(f"controller failed while queue {self.qid} waited: {why}", device=self.device)
            now = time.monotonic()
            if now > deadline:
                return []
            if self.irq is not None:
                quiet = not self.irq.wait(min(deadline - now, 0.25))
            elif spins > 4:  # give the CPU back early: the device model may need it (a VM, qtest)
                time.sleep(0.00005 if spins < 256 else 0.0005 if spins < 4096 else 0.002)

    def poll(self, cid: int, timeout: float) -> Completion:
        """Wait for the completion of *cid* (others reaped meanwhile stay in :attr:`finished`).

        Raises CommandTimeout, ControllerError (fatal status, a CQE for no command).
        """
        deadline = time.monotonic() + timeout
        while cid not in self.finished:
            if not self.wait(deadline) and time.monotonic() > deadline:
                raise CommandTimeout(f"no completion for command {cid} on queue {self.qid} within {timeout:g} s",
                                     device=self.device)
        return self.finished.pop(cid)

    def execute(self, opcode: int, *, timeout: float, admin: bool, lba: int | None = None, **fields: int) -> Completion:
        """Submit one command and wait for it. Raises the typed status error when it failed."""
        cid = self.push(opcode, timeout=timeout, admin=admin, lba=lba, **fields)
        self.ring()
        cqe = self.poll(cid, timeout)
        if not cqe.ok:
            raise status_error(cqe, opcode=opcode, admin=admin, device=self.device, lba=lba)
        return cqe

    def expired(self, now: float) -> list[int]:
        """CIDs in flight past their deadline."""
        return [cid for cid, t in self.inflight.items() if t.deadline < now]

    def free(self) -> None:
        for buf in (self.sq, self.cq, self.lists):
            if buf is not None:
                buf.free()
