"""AHCI HBA (ABAR = BAR5) generic host control and per-port registers (AHCI 1.3.1 section 3;
hardware.md 3.2). Port n is the AHCI_PORT map at ``0x100 + 0x80 * n``: :func:`ahci_port`."""

from __future__ import annotations

from fsproto.hw.region import Region
from fsproto.hw.regs import F, RegMap, Register, Regs

AHCI_HBA = RegMap(
    "ahci-hba",
    [
        Register("CAP", 0x00, 32, (
            F("NP", "4:0", "ro", "ports - 1"), F("SXS", 5, "ro"), F("EMS", 6, "ro"), F("CCCS", 7, "ro"),
            F("NCS", "12:8", "ro", "command slots - 1"), F("PSC", 13, "ro"), F("SSC", 14, "ro"), F("PMD", 15, "ro"),
            F("FBSS", 16, "ro"), F("SPM", 17, "ro"), F("SAM", 18, "ro", "AHCI only"),
            F("ISS", "23:20", "ro", values={1: "Gen1", 2: "Gen2", 3: "Gen3"}), F("SCLO", 24, "ro"), F("SAL", 25, "ro"),
            F("SALP", 26, "ro"), F("SSS", 27, "ro"), F("SMPS", 28, "ro"), F("SSNTF", 29, "ro"), F("SNCQ", 30, "ro"),
            F("S64A", 31, "ro"),
        ), kind="ro"),
        Register("GHC", 0x04, 32, (F("HR", 0, doc="HBA reset"), F("IE", 1), F("MRSM", 2, "ro"), F("AE", 31, doc="AHCI enable"))),
        Register("IS", 0x08, 32, (F("IPS", "31:0", "rw1c", "interrupt pending per port"),)),
        Register("PI", 0x0C, 32, (F("PI", "31:0", "ro", "ports implemented"),), kind="ro"),
        Register("VS", 0x10, 32, (F("MNR", "15:0", "ro"), F("MJR", "31:16", "ro")), kind="ro"),
        Register("CCC_CTL", 0x14, 32),
        Register("CCC_PORTS", 0x18, 32),
        Register("EM_LOC", 0x1C, 32, kind="ro"),
        Register("EM_CTL", 0x20, 32),
        Register("CAP2", 0x24, 32, (F("BOH", 0, "ro"), F("NVMP", 1, "ro"), F("APST", 2, "ro")), kind="ro"),
        Register("BOHC", 0x28, 32, (F("BOS", 0), F("OOS", 1), F("SOOE", 2), F("OOC", 3, "rw1c"), F("BB", 4))),
    ],
    source="Serial ATA AHCI 1.3.1, section 3.1",
)

AHCI_PORT = RegMap(
    "ahci-port",
    [
        Register("CLB", 0x00, 32, (F("CLB", "31:10", doc="command list base, 1 KiB aligned"),)),
        Register("CLBU", 0x04, 32),
        Register("FB", 0x08, 32, (F("FB", "31:8", doc="received-FIS base, 256 B aligned"),)),
        Register("FBU", 0x0C, 32),
        Register("IS", 0x10, 32, (
            F("DHRS", 0, "rw1c"), F("PSS", 1, "rw1c"), F("DSS", 2, "rw1c"), F("SDBS", 3, "rw1c"), F("UFS", 4, "ro"),
            F("DPS", 5, "rw1c"), F("PCS", 6, "ro"), F("DMPS", 7, "rw1c"), F("PRCS", 22, "ro"), F("IPMS", 23, "rw1c"),
            F("OFS", 24, "rw1c"), F("INFS", 26, "rw1c"), F("IFS", 27, "rw1c"), F("HBDS", 28, "rw1c"),
            F("HBFS", 29, "rw1c"), F("TFES", 30, "rw1c", "task file error"), F("CPDS", 31, "rw1c"),
        )),
        Register("IE", 0x14, 32),
        Register("CMD", 0x18, 32, (
            F("ST", 0, doc="start"), F("SUD", 1), F("POD", 2), F("CLO", 3), F("FRE", 4, doc="FIS receive enable"),
            F("CCS", "12:8", "ro"), F("MPSS", 13, "ro"), F("FR", 14, "ro", "FIS receive running"),
            F("CR", 15, "ro", "command list running"), F("CPS", 16, "ro"), F("PMA", 17), F("HPCP", 18, "ro"),
            F("MPSP", 19, "ro"), F("CPD", 20, "ro"), F("ESP", 21, "ro"), F("FBSCP", 22, "ro"), F("APSTE", 23),
            F("ATAPI", 24), F("DLAE", 25), F("ALPE", 26), F("ASP", 27), F("ICC", "31:28"),
        )),
        Register("TFD", 0x20, 32, (F("STS_ERR", 0, "ro"), F("STS_DRQ", 3, "ro"), F("STS_BSY", 7, "ro"),
                                    F("STS", "7:0", "ro"), F("ERR", "15:8", "ro")), kind="ro"),
        Register("SIG", 0x24, 32, (F("SIG", "31:0", "ro", values={
            0x00000101: "SATA disk", 0xEB140101: "ATAPI", 0xC33C0101: "SEMB", 0x96690101: "port multiplier"}),), kind="ro"),
        Register("SSTS", 0x28, 32, (F("DET", "3:0", "ro", values={0: "none", 1: "no phy", 3: "device+phy", 4: "offline"}),
                                     F("SPD", "7:4", "ro"), F("IPM", "11:8", "ro")), kind="ro"),
        Register("SCTL", 0x2C, 32, (F("DET", "3:0"), F("SPD", "7:4"), F("IPM", "11:8"))),
        Register("SERR", 0x30, 32, (F("ERR", "15:0", "rw1c"), F("DIAG", "31:16", "rw1c"))),
        Register("SACT", 0x34, 32, (F("DS", "31:0", "w1s"),)),
        Register("CI", 0x38, 32, (F("CI", "31:0", "w1s", "command issue per slot"),)),
        Register("SNTF", 0x3C, 32, (F("PMN", "15:0", "rw1c"),)),
        Register("FBS", 0x40, 32),
    ],
    source="Serial ATA AHCI 1.3.1, section 3.3",
)


def ahci_port(abar: Region, n: int) -> Regs:
    """Port *n*'s registers on an ABAR region. Raises RegionOutOfRange for a port past the BAR."""
    return AHCI_PORT.bind(abar, 0x100 + 0x80 * n)
