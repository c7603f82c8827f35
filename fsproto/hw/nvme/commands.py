"""NVMe commands as data: submission entries, completion entries, status codes, Identify data.

References: NVM Express Base Specification 2.0, 3.3.3 (SQE/CQE layouts), 5 (admin commands),
NVM Command Set 3 (Read/Write/Flush), figure "Status Code - Generic Command Status Values";
``shared/specs/hardware.md`` 3.1 (the offsets used below, checked there against SPDK's
``nvme_spec.h`` and QEMU). Declarations only: the queues move these bytes, the controller
decides what to send.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from fsproto.errors import CommandError, LbaOutOfRange

SQE_SIZE = 64
CQE_SIZE = 16
IDENTIFY_SIZE = 4096

# Admin opcodes (Base spec figure 84).
ADMIN_DELETE_SQ, ADMIN_CREATE_SQ, ADMIN_DELETE_CQ, ADMIN_CREATE_CQ = 0x00, 0x01, 0x04, 0x05
ADMIN_IDENTIFY, ADMIN_ABORT, ADMIN_SET_FEATURES, ADMIN_GET_FEATURES = 0x06, 0x08, 0x09, 0x0A
ADMIN_ASYNC_EVENT = 0x0C
# NVM opcodes (NVM Command Set figure 17).
NVM_FLUSH, NVM_WRITE, NVM_READ, NVM_WRITE_ZEROES, NVM_DSM = 0x00, 0x01, 0x02, 0x08, 0x09
ONCS_DSM, ONCS_WRITE_ZEROES = 1 << 2, 1 << 3  # Identify Controller ONCS bits (optional NVM commands)
DSM_DEALLOCATE = 1 << 2  # CDW11 AD: the ranges are deallocated (trim)
DSM_RANGE_SIZE, DSM_MAX_RANGES = 16, 256  # context attributes, length in LBAs, starting LBA
WRITE_ZEROES_DEAC = 1 << 25  # CDW12: the controller may deallocate instead of writing zeroes

# Data pointer: PSDT (DW0 bits 15:14) 00 = PRPs, 01 = an SGL in DW6-9 (Base spec 4.1.1, 4.3.2).
PSDT_PRP, PSDT_SGL = 0, 1
SGL_DESCRIPTOR_SIZE = 16
SGL_DATA_BLOCK, SGL_LAST_SEGMENT = 0x00, 0x30  # SGL identifier byte: type 7:4, subtype 3:0 (0 = address)

CNS_NAMESPACE, CNS_CONTROLLER, CNS_ACTIVE_NSIDS = 0x00, 0x01, 0x02
FEATURE_NUMBER_OF_QUEUES = 0x07

OPCODE_NAMES = {
    (True, ADMIN_DELETE_SQ): "Delete I/O SQ", (True, ADMIN_CREATE_SQ): "Create I/O SQ",
    (True, ADMIN_DELETE_CQ): "Delete I/O CQ", (True, ADMIN_CREATE_CQ): "Create I/O CQ",
    (True, ADMIN_IDENTIFY): "Identify", (True, ADMIN_SET_FEATURES): "Set Features",
    (True, ADMIN_GET_FEATURES): "Get Features", (True, ADMIN_ABORT): "Abort",
    (True, ADMIN_ASYNC_EVENT): "Asynchronous Event Request",
    (False, NVM_FLUSH): "Flush", (False, NVM_WRITE): "Write", (False, NVM_READ): "Read",
    (False, NVM_WRITE_ZEROES): "Write Zeroes", (False, NVM_DSM): "Dataset Management",
}

# Generic command status (SCT 0), the values a block device meets (Base spec figure 102).
GENERIC_STATUS = {
    0x00: "successful completion", 0x01: "invalid command opcode", 0x02: "invalid field in command",
    0x03: "command ID conflict", 0x04: "data transfer error", 0x05: "commands aborted due to power loss",
    0x06: "internal error", 0x07: "command abort requested", 0x08: "command aborted due to SQ deletion",
    0x0B: "invalid namespace or format", 0x0C: "command sequence error", 0x0D: "PRP offset invalid", 0x13: "invalid SGL segment descriptor",
    0x80: "LBA out of range", 0x81: "capacity exceeded", 0x82: "namespace not ready",
}
# Command specific status (SCT 1) of the admin commands this driver sends (figure 103).
COMMAND_SPECIFIC_STATUS = {
    0x00: "completion queue invalid", 0x01: "invalid queue identifier", 0x02: "invalid queue size",
    0x03: "abort command limit exceeded",
    0x08: "invalid interrupt vector", 0x0D: "feature identifier not saveable", 0x0E: "feature not changeable",
    0x80: "conflicting attributes", 0x81: "invalid protection information", 0x82: "write to read-only range",
}
# Media and data integrity errors (SCT 2, figure 104).
MEDIA_STATUS = {
    0x80: "write fault", 0x81: "unrecovered read error", 0x82: "end-to-end guard check error",
    0x85: "compare failure", 0x86: "access denied", 0x87: "deallocated or unwritten logical block",
}
SCT_NAMES = {0: "generic", 1: "command specific", 2: "media/data integrity", 3: "path related", 7: "vendor specific"}


def sqe(opcode: int, cid: int, *, nsid: int = 0, prp1: int = 0, prp2: int = 0, cdw10: int = 0, cdw11: int = 0,
        cdw12: int = 0, cdw13: int = 0, cdw14: int = 0, cdw15: int = 0, psdt: int = PSDT_PRP) -> bytes:
    """One 64-byte submission entry: DW0 = OPC | PSDT << 14 | CID << 16, DW1 NSID, DW6-9 PRP1/2
    (or, with PSDT 01, the 16-byte SGL descriptor SGL1 in the same place)."""
    return struct.pack("<IIQQQQIIIIII", opcode | psdt << 14 | cid << 16, nsid, 0, 0, prp1, prp2,
                       cdw10, cdw11, cdw12, cdw13, cdw14, cdw15)


def sgl_descriptor(addr: int, length: int, kind: int = SGL_DATA_BLOCK) -> bytes:
    """One 16-byte SGL descriptor: address, length, 3 reserved bytes, identifier (Base spec 4.3.2)."""
    return struct.pack("<QI3xB", addr, length, kind)


def sgl_fields(descriptor: bytes) -> tuple[int, int]:
    """The SGL1 descriptor as the (prp1, prp2) words of DW6-9 that :func:`sqe` takes."""
    return struct.unpack("<QQ", descriptor)


def dsm_range(lba: int, count: int) -> bytes:
    """One Dataset Management range: context attributes 0, *count* blocks at *lba* (NVM spec 3.3.3)."""
    return struct.pack("<IIQ", 0, count, lba)


assert len(sgl_descriptor(0, 0)) == SGL_DESCRIPTOR_SIZE and len(dsm_range(0, 0)) == DSM_RANGE_SIZE


assert len(sqe(0, 0)) == SQE_SIZE


@dataclass(frozen=True)
class Completion:
    """One decoded 16-byte completion entry (Base spec figure 90)."""

    dw0: int
    sq_head: int
    sq_id: int
    cid: int
    phase: int
    sc: int  # status code
    sct: int  # status code type
    crd: int
    more: int
    dnr: int  # do not retry

    @classmethod
    def parse(cls, raw: bytes) -> "Completion":
        dw0, _dw1, dw2, dw3 = struct.unpack("<IIII", raw)
        return cls.from_words(dw0, dw2, dw3)

    @classmethod
    def from_words(cls, dw0: int, dw2: int, dw3: int) -> "Completion":
        status = dw3 >> 17
        return cls(dw0, dw2 & 0xFFFF, dw2 >> 16, dw3 & 0xFFFF, dw3 >> 16 & 1, status & 0xFF, status >> 8 & 7,
                   status >> 11 & 3, status >> 13 & 1, status >> 14 & 1)

    @property
    def ok(self) -> bool:
        return self.sct == 0 and self.sc == 0

    def describe(self) -> str:
        table = {0: GENERIC_STATUS, 1: COMMAND_SPECIFIC_STATUS, 2: MEDIA_STATUS}.get(self.sct, {})
        what = table.get(self.sc, "unknown status")
        return f"{what} (SCT {self.sct:#x} {SCT_NAMES.get(self.sct, '?')}, SC {self.sc:#04x}{', DNR' if self.dnr else ''})"


def status_error(cqe: Completion, *, opcode: int, admin: bool, device: str, lba: int | None = None) -> CommandError:
    """The typed error for a failed completion: LbaOutOfRange for SC 80h/81h, else CommandError."""
    name = OPCODE_NAMES.get((admin, opcode), f"opcode {opcode:#04x}")
    status = {"sct": cqe.sct, "sc": cqe.sc, "dnr": cqe.dnr, "more": cqe.more, "crd": cqe.crd}
    msg = f"{name} failed: {cqe.describe()}"
    cls = LbaOutOfRange if cqe.sct == 0 and cqe.sc in (0x80, 0x81) else CommandError
    return cls(msg, device=device, lba=lba, opcode=opcode, status=status)


def _ascii(raw: bytes) -> str:
    return raw.decode("ascii", "replace").rstrip(" \0")


@dataclass(frozen=True)
class IdentifyController:
    """Identify Controller data (CNS 01h), the fields a driver needs (Base spec figure 275)."""

    vid: int
    ssvid: int
    serial: str  # SN, bytes 4-23
    model: str  # MN, bytes 24-63
    firmware: str  # FR, bytes 64-71
    mdts: int  # byte 77: max transfer = 2^MDTS minimum pages, 0 = no limit
    cntlid: int
    version: int
    oacs: int
    sqes: int
    cqes: int
    maxcmd: int
    nn: int  # number of namespaces
    oncs: int
    vwc: int  # volatile write cache present (bit 0)
    sgls: int  # bytes 536-539: bits 1:0 = 01 SGLs without alignment, 10 dword-aligned, 00 none

    @classmethod
    def parse(cls, raw: bytes) -> "IdentifyController":
        u16 = lambda o: int.from_bytes(raw[o : o + 2], "little")  # noqa: E731
        u32 = lambda o: int.from_bytes(raw[o : o + 4], "little")  # noqa: E731
        return cls(u16(0), u16(2), _ascii(raw[4:24]), _ascii(raw[24:64]), _ascii(raw[64:72]), raw[77], u16(78),
                   u32(80), u16(256), raw[512], raw[513], u16(514), u32(516), u16(520), raw[525], u32(536))

    @property
    def sgl_support(self) -> int:
        """0 no SGLs, 1 SGLs with byte-aligned data blocks, 2 SGLs needing dword alignment."""
        return self.sgls & 3 if self.sgls & 3 != 3 else 0  # 11b is reserved


@dataclass(frozen=True)
class IdentifyNamespace:
    """Identify Namespace data (CNS 00h), NVM command set (NVM Command Set figure 97)."""

    nsze: int  # size in logical blocks
    ncap: int
    nuse: int
    nsfeat: int
    nlbaf: int  # number of LBA formats, 0-based
    flbas: int
    lbaf: tuple[tuple[int, int, int], ...]  # (metadata size, LBADS, relative performance)

    @classmethod
    def parse(cls, raw: bytes) -> "IdentifyNamespace":
        nsze, ncap, nuse = struct.unpack_from("<QQQ", raw, 0)
        nlbaf = raw[25]
        lbaf = []
        for i in range(min(nlbaf, 63) + 1):
            v = int.from_bytes(raw[128 + 4 * i : 132 + 4 * i], "little")
            lbaf.append((v & 0xFFFF, v >> 16 & 0xFF, v >> 24 & 3))
        return cls(nsze, ncap, nuse, raw[24], nlbaf, raw[26], tuple(lbaf))

    @property
    def format_index(self) -> int:
        # FLBAS bits 3:0, plus bits 6:5 as the high bits when more than 16 formats (2.0).
        return (self.flbas & 0xF) | ((self.flbas >> 5 & 3) << 4 if self.nlbaf >= 16 else 0)

    @property
    def block_size(self) -> int:
        """Bytes per logical block of the active format (2^LBADS); 0 when the format is absent or
        outside 512 B..64 KiB (the spec's minimum is 512; a larger value is a broken device)."""
        idx = self.format_index
        return 1 << self.lbaf[idx][1] if idx < len(self.lbaf) and 9 <= self.lbaf[idx][1] <= 16 else 0

    @property
    def metadata_size(self) -> int:
        idx = self.format_index
        return self.lbaf[idx][0] if idx < len(self.lbaf) else 0
