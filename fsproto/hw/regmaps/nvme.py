"""NVMe controller registers, BAR0 (NVMe base spec 3.1; hardware.md 3.1; libvfn src/nvme/types.h).

Doorbells depend on CAP.DSTRD, so they are added per controller with
:func:`nvme_with_doorbells` once CAP has been read.
"""

from __future__ import annotations

from fsproto.hw.regs import F, RegMap, Register

NVME = RegMap(
    "nvme",
    [
        Register("CAP", 0x00, 64, (
            F("MQES", "15:0", "ro", "max queue entries, 0-based"), F("CQR", 16, "ro", "contiguous queues required"),
            F("AMS", "18:17", "ro"), F("TO", "31:24", "ro", "ready timeout, 500 ms units"),
            F("DSTRD", "35:32", "ro", "doorbell stride = 4 << DSTRD"), F("NSSRS", 36, "ro"),
            F("CSS", "44:37", "ro", "command sets (bit0 NVM, bit6 I/O sets, bit7 admin only)"), F("BPS", 45, "ro"),
            F("MPSMIN", "51:48", "ro", "page = 2^(12+x)"), F("MPSMAX", "55:52", "ro"), F("PMRS", 56, "ro"),
            F("CMBS", 57, "ro"), F("NSSS", 58, "ro"), F("CRWMS", 59, "ro"), F("CRIMS", 60, "ro"),
        ), kind="ro"),
        Register("VS", 0x08, 32, (F("TER", "7:0", "ro"), F("MNR", "15:8", "ro"), F("MJR", "31:16", "ro")), kind="ro"),
        Register("INTMS", 0x0C, 32, kind="wo", doc="interrupt mask set (write 1s)"),
        Register("INTMC", 0x10, 32, kind="wo", doc="interrupt mask clear (write 1s)"),
        Register("CC", 0x14, 32, (
            F("EN", 0), F("CSS", "6:4", values={0: "NVM", 6: "all I/O sets", 7: "admin only"}), F("MPS", "10:7"),
            F("AMS", "13:11", values={0: "round robin"}), F("SHN", "15:14", values={0: "none", 1: "normal", 2: "abrupt"}),
            F("IOSQES", "19:16"), F("IOCQES", "23:20"), F("CRIME", 24),
        )),
        Register("CSTS", 0x1C, 32, (
            F("RDY", 0, "ro"), F("CFS", 1, "ro", "controller fatal status"),
            F("SHST", "3:2", "ro", values={0: "normal", 1: "in progress", 2: "complete"}),
            F("NSSRO", 4, "rw1c", "NVM subsystem reset occurred"), F("PP", 5, "ro", "processing paused"),
        )),
        Register("NSSR", 0x20, 32, kind="wo", doc='write 0x4E564D65 ("NVMe") for a subsystem reset'),
        Register("AQA", 0x24, 32, (F("ASQS", "11:0", doc="0-based"), F("ACQS", "27:16", doc="0-based"))),
        Register("ASQ", 0x28, 64, (F("ASQB", "63:12", doc="admin SQ base, page aligned"),)),
        Register("ACQ", 0x30, 64, (F("ACQB", "63:12", doc="admin CQ base, page aligned"),)),
        Register("CMBLOC", 0x38, 32, (F("BIR", "2:0", "ro"), F("OFST", "31:12", "ro")), kind="ro"),
        Register("CMBSZ", 0x3C, 32, (F("SQS", 0, "ro"), F("CQS", 1, "ro"), F("LISTS", 2, "ro"), F("RDS", 3, "ro"),
                                      F("WDS", 4, "ro"), F("SZU", "11:8", "ro"), F("SZ", "31:12", "ro")), kind="ro"),
        Register("BPINFO", 0x40, 32, kind="ro"),
        Register("BPRSEL", 0x44, 32),
        Register("BPMBL", 0x48, 64),
        Register("CMBMSC", 0x50, 64, (F("CRE", 0), F("CMSE", 1), F("CBA", "63:12"))),
        Register("CMBSTS", 0x58, 32, (F("CBAI", 0, "ro"),), kind="ro"),
        Register("CRTO", 0x68, 32, kind="ro"),
    ],
    source="NVM Express Base Specification 2.0, section 3.1 (controller registers)",
)


def nvme_doorbell_offset(qid: int, *, completion: bool, dstrd: int = 0) -> int:
    """SQ y tail doorbell at 0x1000 + 2y * (4 << DSTRD); CQ y head at 0x1000 + (2y+1) * (4 << DSTRD)."""
    return 0x1000 + (2 * qid + (1 if completion else 0)) * (4 << dstrd)


def nvme_with_doorbells(queues: int, dstrd: int = 0) -> RegMap:
    """The NVMe map plus SQ{y}TDBL / CQ{y}HDBL doorbells for queues 0..queues-1."""
    bells = []
    for q in range(queues):
        bells.append(Register(f"SQ{q}TDBL", nvme_doorbell_offset(q, completion=False, dstrd=dstrd), 32,
                              (F("SQT", "15:0"),), kind="doorbell"))
        bells.append(Register(f"CQ{q}HDBL", nvme_doorbell_offset(q, completion=True, dstrd=dstrd), 32,
                              (F("CQH", "15:0"),), kind="doorbell"))
    return NVME.extended(f"nvme+{queues}q", bells)
