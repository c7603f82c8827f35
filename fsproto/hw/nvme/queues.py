"""NVMe queue pairs: a submission ring, a completion ring with phase tags, their doorbells,
polled completions with a deadline, and PRP construction.

References: NVM Express Base Specification 2.0, 3.3.1 (queue rings, head/tail), 4.1 (phase tag:
the controller inverts P on every pass, the CQ starts zeroed so the first pass has P=1),
4.3 (PRP entries and lists); ``shared/specs/hardware.md`` 3.1.

Every doorbell write is one 32-bit store through :meth:`Regs.ring` (never read, never
read-modify-written). A completion is detected by one 32-bit load of its DW3 (phase and CID)
and only then read whole, so a half-written entry is never decoded.

Limits: polled only (no interrupts: the CQ is created with IEN=0); one outstanding command
per :meth:`QueuePair.execute` call; queue memory is one physically contiguous page each.
"""

from __future__ import annotations

import time
from typing import Callable

from fsproto.errors import CommandTimeout, ControllerError, HardwareError, UsageError
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme.commands import CQE_SIZE, SQE_SIZE, Completion, sqe, status_error
from fsproto.hw.regs import Regs

Allocator = Callable[[int], DmaBuffer]  # (size) -> zeroed, page-aligned DMA memory


class QueuePair:
    """Submission queue *qid* and its completion queue, in one page of DMA memory each.

    ``fatal()`` is called while polling so a dead controller (CSTS.CFS) ends the wait at once.
    Raises (from :meth:`execute`) CommandError/LbaOutOfRange for an error status,
    CommandTimeout when no completion arrives before the deadline, ControllerError when the
    controller reports a fatal status or a completion that does not match.
    """

    def __init__(self, qid: int, entries: int, alloc: Allocator, regs: Regs, *, device: str,
                 fatal: Callable[[], str | None]) -> None:
        if not 2 <= entries <= 4096 // SQE_SIZE:
            raise UsageError(f"queue of {entries} entries does not fit one page (2..{4096 // SQE_SIZE})")
        self.qid, self.entries, self.device = qid, entries, device
        self.sq = alloc(entries * SQE_SIZE)
        try:
            self.cq = alloc(entries * CQE_SIZE)
        except BaseException:
            self.sq.free()
            raise
        self._regs = regs
        self._sq_bell = f"SQ{qid}TDBL"
        self._cq_bell = f"CQ{qid}HDBL"
        self._fatal = fatal
        self.sq_tail = 0
        self.sq_head = 0  # as last reported by the controller in a CQE
        self.cq_head = 0
        self.phase = 1  # expected phase of the next new entry (first pass: 1)
        self._cid = 0
        self.commands = 0

    @property
    def sq_addr(self) -> int:
        return self.sq.device_addr(0)

    @property
    def cq_addr(self) -> int:
        return self.cq.device_addr(0)

    def _next_cid(self) -> int:
        # CIDs cycle through 1..0xFFFE: 0xFFFF is reserved (2.0), 0 would look like a zeroed entry.
        self._cid = self._cid % 0xFFFE + 1
        return self._cid

    def submit(self, opcode: int, **fields: int) -> int:
        """Place one command in the SQ and ring the tail doorbell; returns its CID.

        Raises ControllerError when the SQ is full (the controller consumed nothing).
        """
        if (self.sq_tail + 1) % self.entries == self.sq_head:
            raise ControllerError(f"submission queue {self.qid} is full", device=self.device)
        cid = self._next_cid()
        self.sq.write(self.sq_tail * SQE_SIZE, sqe(opcode, cid, **fields))
        self.sq_tail = (self.sq_tail + 1) % self.entries
        self._regs.ring(self._sq_bell, self.sq_tail)
        self.commands += 1
        return cid

    def poll(self, cid: int, timeout: float) -> Completion:
        """Wait for the completion of *cid*; consume it and ring the CQ head doorbell.

        Raises CommandTimeout, ControllerError (fatal status, a CQE for another command).
        """
        deadline = time.monotonic() + timeout
        offset = self.cq_head * CQE_SIZE
        spins = 0
        while True:
            dw3 = self.cq.region.r32(offset + 12)
            if dw3 >> 16 & 1 == self.phase:
                break
            spins += 1
            if spins % 64 == 0:
                why = self._fatal()
                if why:
                    raise ControllerError(f"controller failed while queue {self.qid} waited: {why}", device=self.device)
            if time.monotonic() > deadline:
                raise CommandTimeout(f"no completion for command {cid} on queue {self.qid} within {timeout:g} s",
                                     device=self.device)
            if spins > 256:
                time.sleep(0.0001 if spins < 4096 else 0.001)
        cqe = Completion.parse(self.cq.read(offset, CQE_SIZE))
        self.cq_head += 1
        if self.cq_head == self.entries:  # wrap: the controller inverts P on its next pass
            self.cq_head = 0
            self.phase ^= 1
        self.sq_head = cqe.sq_head
        self._regs.ring(self._cq_bell, self.cq_head)
        if cqe.cid != cid or cqe.sq_id != self.qid:
            raise ControllerError(f"completion for command {cqe.cid} on SQ {cqe.sq_id}, expected {cid} on {self.qid}",
                                  device=self.device)
        return cqe

    def execute(self, opcode: int, *, timeout: float, admin: bool, lba: int | None = None, **fields: int) -> Completion:
        """Submit one command and wait for it. Raises the typed status error when it failed."""
        cid = self.submit(opcode, **fields)
        cqe = self.poll(cid, timeout)
        if not cqe.ok:
            raise status_error(cqe, opcode=opcode, admin=admin, device=self.device, lba=lba)
        return cqe

    def free(self) -> None:
        self.sq.free()
        self.cq.free()


class PrpBuilder:
    """PRP1/PRP2 for a transfer from a DMA buffer, with a PRP list when it spans > 2 pages.

    *page* is the controller memory page size (2^(12+CC.MPS)). The list lives in its own DMA
    buffer (*list_pages* pages; each page holds page/8 - 1 entries plus a chain pointer), so a
    transfer needs no allocation. Addresses come from ``buf.device_addr(offset)`` page by page:
    a buffer need not be physically contiguous (host memory under uio).
    """

    def __init__(self, alloc: Allocator, page: int, list_pages: int = 1) -> None:
        self.page = page
        self.list_pages = list_pages
        self.list = alloc(page * list_pages)
        self.per_page = page // 8

    @property
    def max_pages(self) -> int:
        """Most data pages one transfer may touch with this list."""
        return 1 + self.list_pages * (self.per_page - 1) + 1

    def build(self, buf: DmaBuffer, offset: int, length: int) -> tuple[int, int]:
        """(PRP1, PRP2) for *length* bytes at *offset* in *buf*. Raises UsageError, HardwareError."""
        if length <= 0 or offset < 0 or offset + length > buf.size:
            raise UsageError(f"transfer {offset}+{length} outside the {buf.size}-byte buffer")
        if offset % 4:
            raise UsageError("PRP1 must be dword aligned")
        prp1 = buf.device_addr(offset)
        first = self.page - prp1 % self.page  # bytes PRP1 covers (to the end of its page)
        if length <= first:
            return prp1, 0
        rest = [buf.device_addr(o) for o in range(offset + first, offset + length, self.page)]
        if any(a % self.page for a in rest):
            raise HardwareError("buffer pages are not aligned to the controller page size", device=str(buf))
        if len(rest) == 1:
            return prp1, rest[0]
        if len(rest) > self.max_pages - 1:
            raise UsageError(f"transfer of {length} bytes needs {len(rest)} PRP entries; the list holds "
                             f"{self.max_pages - 1}")
        entries: list[int] = []
        remaining = rest
        for p in range(self.list_pages):
            room = self.per_page
            if len(remaining) > room:  # last slot chains to the next list page
                chunk, remaining = remaining[: room - 1], remaining[room - 1 :]
                entries += chunk + [self.list.device_addr((p + 1) * self.page)]
            else:
                entries += remaining
                remaining = []
                break
        self.list.write(0, b"".join(a.to_bytes(8, "little") for a in entries))
        return prp1, self.list.device_addr(0)

    def free(self) -> None:
        self.list.free()
