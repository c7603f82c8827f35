"""Native Command Queuing on an AHCI port: up to 32 READ/WRITE FPDMA QUEUED commands in flight.

References: Serial ATA AHCI 1.3.1, 5.3.3 / 5.6.4 (NCQ: set the tag's PxSACT bit, then its PxCI
bit; the device completes tags in any order with Set Device Bits FISes that clear PxSACT bits);
ATA/ATAPI-8 ACS 7.29/7.68 (READ/WRITE FPDMA QUEUED 60h/61h: sector count in FEATURE 15:0, tag
in COUNT 7:3), IDENTIFY word 75 (queue depth) and word 76 bit 8 (NCQ supported);
``shared/specs/hardware.md`` 3.2.

:class:`NcqQueue` owns one command table per tag (in its own DMA memory) and uses the port's
command list; :meth:`NcqQueue.run` issues a list of (write, lba, sectors, buffer, offset) with
every free tag in use, one PxSACT and one PxCI write per round, and reaps every tag whose PxSACT
bit cleared. An error (PxIS.TFES and friends) stops the port, which ends every queued command,
clears the error and restarts it: the batch fails with the typed error (which command failed is
in the NCQ error log, read log 10h, not read here).

Limits: polled; the same 512-byte sectors and PRDT sizes as :mod:`fsproto.hw.ahci`; FUA and
priority bits are never set.
"""

from __future__ import annotations

import struct
import time
from typing import Sequence

from fsproto.errors import CommandTimeout, ControllerError, LbaOutOfRange, UsageError
from fsproto.hw.ahci import COMMAND_TIMEOUT, PRDT_OFFSET, SECTOR, AhciPort, h2d_fis

ATA_READ_FPDMA_QUEUED, ATA_WRITE_FPDMA_QUEUED = 0x60, 0x61
TABLE = 0x500  # per-tag command table: CFIS + ATAPI + 64 PRDs (0x480), 128-byte aligned

Request = tuple[bool, int, int, object, int]  # (write, lba, sectors, DmaBuffer, offset)


class NcqQueue:
    """NCQ on *port* with *depth* tags (at most the disk's and the HBA's). Raises UsageError
    (the disk or the HBA has no NCQ), ControllerError."""

    def __init__(self, port: AhciPort, depth: int | None = None) -> None:
        hba = port.hba
        slots = (int(hba.regs.CAP) >> 8 & 0x1F) + 1
        if not int(hba.regs.CAP) >> 30 & 1 or not port.identify.ncq_depth:
            raise UsageError("no NCQ: the HBA (CAP.SNCQ) or the disk (IDENTIFY word 76) lacks it", device=port.name)
        self.port = port
        self.depth = min(depth or 32, slots, port.identify.ncq_depth)
        self.tables = hba.alloc(TABLE * self.depth)
        self.peak = 0
        self.out_of_order = 0

    def run(self, requests: Sequence[Request], timeout: float = COMMAND_TIMEOUT) -> None:
        """Execute every request with up to :attr:`depth` in flight; return when all are done.

        Raises LbaOutOfRange (refused before issue), CommandError/ControllerError (the port
        reported an error: it was recovered), CommandTimeout.
        """
        port, regs = self.port, self.port.regs
        port.hba._check_open()
        for write, lba, n, _buf, _off in requests:
            if lba < 0 or lba + n > port.identify.sectors or not 1 <= n <= port.hba.max_transfer // SECTOR:
                raise LbaOutOfRange(f"{n} sector(s) at {lba}: outside the disk or over one command",
                                    device=port.name, lba=lba)
        pending = list(range(len(requests)))[::-1]
        free = list(range(self.depth))[::-1]
        busy: dict[int, tuple[int, int]] = {}  # tag -> (request index, issue order)
        order = 0
        sact_reg = regs.base + 0x34
        deadline = time.monotonic() + timeout
        regs.clear("IS")
        while pending or busy:
            bits = 0
            while pending and free:
                i, tag = pending.pop(), free.pop()
                write, lba, n, buf, off = requests[i]
                self._prepare(tag, write, lba, n, buf, off)
                busy[tag] = (i, order)
                order += 1
                bits |= 1 << tag
            if bits:
                port.hba.bar.w32(sact_reg, bits)  # w1s: PxSACT before PxCI (AHCI 5.6.4)
                port.hba.bar.w32(regs.base + 0x38, bits)
                port.commands += bin(bits).count("1")
                self.peak = max(self.peak, len(busy))
            sact = port.hba.bar.r32(sact_reg)
            is_ = regs.IS
            if is_.TFES or is_.HBFS or is_.HBDS or is_.IFS:
                first = min(busy.values())[0] if busy else 0
                write, lba = requests[first][0], requests[first][1]
                port._check_status(ATA_WRITE_FPDMA_QUEUED if write else ATA_READ_FPDMA_QUEUED, lba, int(is_))
                port._recover()  # status without ERR: still stop the queue cleanly
                raise ControllerError(f"NCQ error (PxIS {int(is_):#x})", device=port.name, lba=lba)
            done = [tag for tag in busy if not sact >> tag & 1]
            if done:
                oldest = min(o for _i, o in busy.values())
                self.out_of_order += sum(1 for tag in done if busy[tag][1] != oldest) if len(done) < len(busy) else 0
                for tag in done:
                    del busy[tag]
                    free.append(tag)
                deadline = time.monotonic() + timeout
                continue
            if time.monotonic() > deadline:
                port._recover()
                raise CommandTimeout(f"{len(busy)} NCQ command(s) did not complete in {timeout:g} s", device=port.name)
            time.sleep(0.0001)

    def _prepare(self, tag: int, write: bool, lba: int, n: int, buf, off: int) -> None:  # type: ignore[no-untyped-def]
        runs = self.port._prdt(buf, off, n * SECTOR)
        table = bytearray(PRDT_OFFSET + 16 * len(runs))
        table[0:20] = h2d_fis(ATA_WRITE_FPDMA_QUEUED if write else ATA_READ_FPDMA_QUEUED, lba, tag << 3, features=n)
        for k, (addr, size) in enumerate(runs):
            struct.pack_into("<IIII", table, PRDT_OFFSET + 16 * k, addr & 0xFFFFFFFF, addr >> 32, 0, size - 1)
        self.tables.write(tag * TABLE, table)
        ctba = self.tables.device_addr(tag * TABLE)
        header = struct.pack("<IIII", 5 | (1 << 6 if write else 0) | len(runs) << 16, 0, ctba & 0xFFFFFFFF, ctba >> 32)
        self.port.mem.write(tag * 32, header + bytes(16))

    def free(self) -> None:
        self.tables.free()
