"""A polled user-space AHCI (SATA) driver: HBA bring-up, one port, IDENTIFY DEVICE, READ/WRITE DMA EXT.

References: Serial ATA AHCI 1.3.1, 10.1.2 (HBA/port initialization), 4.2 (received-FIS area,
command list, command table, PRDT), 5.5 (issuing commands); ATA/ATAPI-8 ACS 7.16 (IDENTIFY
DEVICE words), 7.22/7.60 (READ/WRITE DMA EXT); ``shared/specs/hardware.md`` 3.2.

Like the NVMe driver it sees only a BAR :class:`~fsproto.hw.region.Region` (ABAR = BAR5), the
PCI function and a DMA allocator (:mod:`fsproto.hw.nvme.attach`), so it runs over qtest, uio
and vfio alike. Registers go through :mod:`fsproto.hw.regmaps.ahci`: status registers (PxIS,
PxSERR) are cleared by writing 1s to exactly their bits, PxCI is written, never
read-modify-written (writing back a read value would re-issue commands).

Limits: polled (no interrupts), command slot 0 only (one command at a time; NCQ with many in
flight is :mod:`fsproto.hw.ahci_ncq`), no port
multipliers, 512-byte logical sectors only (what the command table sizes assume).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from fsproto.errors import CommandError, CommandTimeout, ControllerError, HardwareNotFound, LbaOutOfRange, UsageError
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme.queues import Allocator
from fsproto.hw.pci import PciFunction
from fsproto.hw.region import Region
from fsproto.hw.regmaps.ahci import AHCI_HBA, ahci_port
from fsproto.hw.regs import Regs

AHCI_CLASS = 0x010601
SATA_DISK_SIGNATURE = 0x00000101
ATA_IDENTIFY, ATA_READ_DMA_EXT, ATA_WRITE_DMA_EXT, ATA_FLUSH_CACHE_EXT = 0xEC, 0x25, 0x35, 0xEA
ATA_NAMES = {ATA_IDENTIFY: "IDENTIFY DEVICE", ATA_READ_DMA_EXT: "READ DMA EXT", ATA_WRITE_DMA_EXT: "WRITE DMA EXT",
             ATA_FLUSH_CACHE_EXT: "FLUSH CACHE EXT"}
SECTOR = 512
FIS_TYPE_H2D = 0x27
PRDT_OFFSET = 0x80  # command table: CFIS at 0, ATAPI command at 0x40, PRDT at 0x80
MAX_PRDS = 64
PORT_TIMEOUT = 0.5  # AHCI 10.1.2: PxCMD.CR/FR must clear within 500 ms
COMMAND_TIMEOUT = 10.0


def h2d_fis(command: int, lba: int = 0, count: int = 0, *, features: int = 0) -> bytes:
    """A 20-byte Register Host-to-Device FIS (SATA 10.5.5), C=1, LBA mode, 48-bit fields."""
    return bytes([
        FIS_TYPE_H2D, 0x80, command, features & 0xFF,
        lba & 0xFF, lba >> 8 & 0xFF, lba >> 16 & 0xFF, 0x40,  # device: LBA mode
        lba >> 24 & 0xFF, lba >> 32 & 0xFF, lba >> 40 & 0xFF, features >> 8 & 0xFF,
        count & 0xFF, count >> 8 & 0xFF, 0, 0,
        0, 0, 0, 0,
    ])


def _ata_string(words: bytes) -> str:
    # ATA strings hold two characters per word, first character in the high byte (ACS 3.4.9).
    swapped = b"".join(words[i + 1 : i + 2] + words[i : i + 1] for i in range(0, len(words), 2))
    return swapped.decode("ascii", "replace").strip(" \0")


@dataclass(frozen=True)
class AtaIdentify:
    """The IDENTIFY DEVICE words a block device needs."""

    serial: str  # words 10-19
    firmware: str  # words 23-26
    model: str  # words 27-46
    lba48: bool  # word 83 bit 10
    sectors: int  # words 100-103 (LBA48) or 60-61
    logical_sector: int  # word 106 bit 12 -> words 117-118 (in words), else 512
    ncq_depth: int = 0  # word 76 bit 8 (NCQ supported) -> word 75 bits 4:0 + 1, else 0

    @classmethod
    def parse(cls, raw: bytes) -> "AtaIdentify":
        w = struct.unpack("<256H", raw[:512])
        lba48 = bool(w[83] & (1 << 10))
        sectors = (w[100] | w[101] << 16 | w[102] << 32 | w[103] << 48) if lba48 else (w[60] | w[61] << 16)
        logical = 512
        if w[106] & 0xC000 == 0x4000 and w[106] & (1 << 12):
            logical = 2 * (w[117] | w[118] << 16)
        ncq = (w[75] & 0x1F) + 1 if w[76] not in (0, 0xFFFF) and w[76] & (1 << 8) else 0
        return cls(_ata_string(raw[20:40]), _ata_string(raw[46:54]), _ata_string(raw[54:94]), lba48, sectors, logical,
                   ncq)


class AhciPort:
    """One port with a SATA disk: command list, received-FIS area and command table (slot 0).

    Built by :meth:`AhciController.port`. Raises from every command: CommandError (the disk set
    ERR in its status; ``status`` holds STS and ERR), LbaOutOfRange (past the disk's end,
    refused before issue), CommandTimeout, ControllerError (host bus/interface fatal errors).
    """

    def __init__(self, hba: "AhciController", n: int) -> None:
        self.hba, self.n = hba, n
        self.name = f"{hba.name}/port{n}"
        self.regs: Regs = ahci_port(hba.bar, n)
        self._stop()
        # One page: command list (1 KiB aligned) at 0, received FIS (256 B aligned) at 1 KiB,
        # command table (128 B aligned) at 2 KiB -- 0x80 + 64 PRDs * 16 B fits the rest of the page.
        self.mem = hba.alloc(4096)
        self.clb, self.fb, self.ctba = self.mem.device_addr(0), self.mem.device_addr(1024), self.mem.device_addr(2048)
        self.regs.write("CLB", self.clb & 0xFFFFFFFF)
        self.regs.write("CLBU", self.clb >> 32)
        self.regs.write("FB", self.fb & 0xFFFFFFFF)
        self.regs.write("FBU", self.fb >> 32)
        self.regs.clear("SERR")
        self.regs.clear("IS")
        self.regs.set("CMD", FRE=1)
        self._wait_idle()
        # PxSIG is only valid after the device's first D2H FIS, which needs FIS receive on (3.3.9).
        sig = int(self.regs.SIG)
        if sig != SATA_DISK_SIGNATURE:
            self.close()
            raise HardwareNotFound(f"port {n} has no SATA disk (signature {sig:#010x})", device=self.name)
        self.regs.set("CMD", ST=1)
        self.commands = 0
        self.identify = AtaIdentify.parse(self._identify())
        if self.identify.logical_sector != SECTOR:
            raise ControllerError(f"{self.identify.logical_sector}-byte sectors are not supported", device=self.name)

    def _wait_bits(self, path: str, value: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.regs.get(path) != value:
            if time.monotonic() > deadline:
                raise CommandTimeout(f"{path} did not become {value} within {timeout:g} s", device=self.name)
            time.sleep(0.0005)

    def _stop(self) -> None:
        # AHCI 10.1.2 step 3: a port must be idle (ST, CR, FRE, FR all 0) before CLB/FB change.
        if self.regs.get("CMD.ST") or self.regs.get("CMD.CR"):
            self.regs.set("CMD", ST=0)
            self._wait_bits("CMD.CR", 0, PORT_TIMEOUT)
        if self.regs.get("CMD.FRE") or self.regs.get("CMD.FR"):
            self.regs.set("CMD", FRE=0)
            self._wait_bits("CMD.FR", 0, PORT_TIMEOUT)

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            tfd = self.regs.TFD
            if not tfd.STS_BSY and not tfd.STS_DRQ:
                return
            if time.monotonic() > deadline:
                raise CommandTimeout(f"disk stays busy (TFD {int(tfd):#x})", device=self.name)
            time.sleep(0.001)

    def _prdt(self, buf: DmaBuffer | None, offset: int, length: int) -> list[tuple[int, int]]:
        """(address, bytes) runs of physically contiguous memory for the PRDT."""
        if buf is None or length == 0:
            return []
        if length % 2 or offset % 2:
            raise UsageError("AHCI transfers are word aligned and an even number of bytes", device=self.name)
        runs: list[tuple[int, int]] = []
        pos, end = offset, offset + length
        while pos < end:
            n = min(4096 - (pos % 4096), end - pos)
            addr = buf.device_addr(pos)
            if runs and runs[-1][0] + runs[-1][1] == addr and runs[-1][1] + n <= 4 << 20:
                runs[-1] = (runs[-1][0], runs[-1][1] + n)
            else:
                runs.append((addr, n))
            pos += n
        if len(runs) > MAX_PRDS:
            raise UsageError(f"transfer needs {len(runs)} PRDs; the table holds {MAX_PRDS}", device=self.name)
        return runs

    def execute(self, command: int, *, lba: int = 0, count: int = 0, buf: DmaBuffer | None = None, offset: int = 0,
                length: int = 0, write: bool = False, timeout: float = COMMAND_TIMEOUT) -> None:
        """Issue one ATA command in slot 0 and wait for it (see the class for what it raises)."""
        self.hba._check_open()
        runs = self._prdt(buf, offset, length)
        table = bytearray(PRDT_OFFSET + 16 * len(runs))
        table[0:20] = h2d_fis(command, lba, count)
        for i, (addr, n) in enumerate(runs):
            struct.pack_into("<IIII", table, PRDT_OFFSET + 16 * i, addr & 0xFFFFFFFF, addr >> 32, 0, n - 1)
        self.mem.write(2048, table)
        # Command header, slot 0: CFL = 5 dwords, W for host-to-device data, PRDTL; PRDBC = 0.
        header = struct.pack("<IIII", 5 | (1 << 6 if write else 0) | len(runs) << 16, 0,
                             self.ctba & 0xFFFFFFFF, self.ctba >> 32) + bytes(16)
        self.mem.write(0, header)
        self.regs.clear("IS")
        self.regs.write("CI", 1)  # w1s: sets only slot 0
        self.commands += 1
        deadline = time.monotonic() + timeout
        while True:
            ci = self.hba.bar.r32(self.regs.base + 0x38)
            is_ = self.regs.IS
            if is_.TFES or is_.HBFS or is_.HBDS or is_.IFS:
                break
            if not ci & 1:
                break
            if time.monotonic() > deadline:
                raise CommandTimeout(f"{ATA_NAMES.get(command, hex(command))} did not complete in {timeout:g} s",
                                     device=self.name, lba=lba)
            time.sleep(0.0001)
        self._check_status(command, lba, is_)

    def _check_status(self, command: int, lba: int, is_: int) -> None:
        tfd = self.regs.TFD
        name = ATA_NAMES.get(command, f"command {command:#04x}")
        if is_ >> 29 & 1 or is_ >> 28 & 1 or is_ >> 27 & 1:  # HBFS, HBDS, IFS: the port stops (AHCI 6.2.2)
            self._recover()
            raise ControllerError(f"{name}: host bus or interface fatal error (PxIS {is_:#x})", device=self.name, lba=lba)
        if tfd.STS_ERR or is_ >> 30 & 1:
            status = {"status": tfd.STS, "error": tfd.ERR}
            self._recover()
            what = "ID not found" if status["error"] & 0x10 else ("aborted" if status["error"] & 0x04 else "error")
            cls = LbaOutOfRange if status["error"] & 0x10 else CommandError
            raise cls(f"{name} failed: {what} (ATA status {status['status']:#04x}, error {status['error']:#04x})",
                      device=self.name, lba=lba, opcode=command, status=status)

    def _recover(self) -> None:
        # AHCI 6.2.2.1: stop the port (clears PxCI), clear the error status, start it again.
        self.regs.set("CMD", ST=0)
        self._wait_bits("CMD.CR", 0, PORT_TIMEOUT)
        self.regs.clear("SERR")
        self.regs.clear("IS")
        self.regs.set("CMD", ST=1)

    def _identify(self) -> bytes:
        buf = self.hba.alloc(512)
        try:
            self.execute(ATA_IDENTIFY, buf=buf, length=512)
            return buf.read(0, 512)
        finally:
            buf.free()

    def _rw(self, command: int, lba: int, count: int, buf: DmaBuffer, offset: int, write: bool) -> None:
        if not 1 <= count <= self.hba.max_transfer // SECTOR:
            raise UsageError(f"{count} sectors is not 1..{self.hba.max_transfer // SECTOR} per command",
                             device=self.name, lba=lba)
        if lba < 0 or lba + count > self.identify.sectors:
            # Refused here: QEMU and many disks answer ABRT, not IDNF, for LBAs past the end.
            raise LbaOutOfRange(f"{count} sector(s) past the end of the {self.identify.sectors}-sector disk",
                                device=self.name, lba=lba, opcode=command)
        self.execute(command, lba=lba, count=count, buf=buf, offset=offset, length=count * SECTOR, write=write)

    def read(self, lba: int, count: int, buf: DmaBuffer, offset: int = 0) -> None:
        """READ DMA EXT of *count* sectors into *buf* at *offset*."""
        self._rw(ATA_READ_DMA_EXT, lba, count, buf, offset, False)

    def write(self, lba: int, count: int, buf: DmaBuffer, offset: int = 0) -> None:
        """WRITE DMA EXT of *count* sectors from *buf* at *offset*."""
        self._rw(ATA_WRITE_DMA_EXT, lba, count, buf, offset, True)

    def flush(self) -> None:
        """FLUSH CACHE EXT."""
        self.execute(ATA_FLUSH_CACHE_EXT)

    def close(self) -> None:
        """Stop the port and free its memory; idempotent, never leaves the port running."""
        if self.mem is None:
            return
        try:
            self._stop()
        finally:
            self.mem.free()
            self.mem = None  # type: ignore[assignment]


class AhciController:
    """The HBA (ABAR = BAR5): AHCI mode on, ports found; :meth:`port` brings one port up.

    Raises HardwareNotFound (not an AHCI function, no disk on a port), ControllerError.
    """

    def __init__(self, bar: Region, pci: PciFunction | None, alloc: Allocator, *, name: str | None = None,
                 max_transfer: int = 128 << 10) -> None:
        self.name = name or bar.name
        self.bar, self.pci, self.alloc = bar, pci, alloc
        self.max_transfer = max_transfer
        self._closed = False
        self._ports: dict[int, AhciPort] = {}
        if pci is not None:
            if pci.class_code != AHCI_CLASS:
                raise HardwareNotFound(f"class {pci.class_code:06x} is not an AHCI controller (010601)", device=self.name)
            pci.enable_memory()
            pci.enable_bus_master()
        self.regs = AHCI_HBA.bind(bar)
        self.cap = self.regs.CAP
        if self.regs.CAP2.BOH:  # BIOS/OS handoff (AHCI 10.6): ask for ownership, give the BIOS 2 s
            self.regs.set("BOHC", OOS=1)
            deadline = time.monotonic() + 2.0
            while self.regs.BOHC.BOS and time.monotonic() < deadline:
                time.sleep(0.01)
        self.regs.set("GHC", AE=1)
        self.implemented = [n for n in range(32) if int(self.regs.PI) >> n & 1]

    def disk_ports(self) -> list[int]:
        """Implemented ports with a device and PHY up (SSTS.DET=3) that may be disks: a SATA disk
        signature, or none yet (PxSIG stays all ones until FIS receive is first enabled)."""
        found = []
        for n in self.implemented:
            p = ahci_port(self.bar, n)
            if p.SSTS.DET == 3 and int(p.SIG) in (SATA_DISK_SIGNATURE, 0xFFFFFFFF):
                found.append(n)
        return found

    def first_disk_port(self) -> int:
        """Raises HardwareNotFound when no port has a disk."""
        ports = self.disk_ports()
        if not ports:
            raise HardwareNotFound(f"no SATA disk on ports {self.implemented}", device=self.name)
        return ports[0]

    def port(self, n: int) -> AhciPort:
        """Port *n*, brought up once. Raises HardwareNotFound (not implemented / no disk)."""
        self._check_open()
        if n not in self._ports:
            if n not in self.implemented:
                raise HardwareNotFound(f"port {n} is not implemented (PI {int(self.regs.PI):#x})", device=self.name)
            if n not in self.disk_ports():
                raise HardwareNotFound(f"no SATA disk on port {n}", device=self.name)
            self._ports[n] = AhciPort(self, n)
        return self._ports[n]

    def _check_open(self) -> None:
        if self._closed:
            raise ControllerError("the AHCI controller is closed", device=self.name)

    def close(self) -> None:
        """Stop every port this driver started; idempotent."""
        if self._closed:
            return
        self._closed = True
        for p in self._ports.values():
            p.close()
        self._ports.clear()

    def __enter__(self) -> "AhciController":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
