"""PCI configuration space, type 0 header (PCI Local Bus spec 3.0 section 6.1; Linux pci_regs.h)."""

from __future__ import annotations

from fsproto.hw.regs import F, RegMap, Register

_BAR = (F("IO", 0, "ro", "1 = I/O space BAR"), F("TYPE", "2:1", "ro", "memory BAR type", {0: "32-bit", 2: "64-bit"}),
        F("PREFETCH", 3, "ro"), F("ADDR", "31:4"))

PCI_CONFIG = RegMap(
    "pci-config",
    [
        Register("VENDOR_ID", 0x00, 16, kind="ro"),
        Register("DEVICE_ID", 0x02, 16, kind="ro"),
        Register("COMMAND", 0x04, 16, (
            F("IO", 0, doc="I/O space decode"), F("MEM", 1, doc="memory space decode (MSE)"),
            F("BME", 2, doc="bus master (DMA)"), F("SPECIAL", 3), F("MWI", 4), F("VGA_SNOOP", 5),
            F("PERR", 6), F("SERR", 8), F("FBB", 9), F("INTX_DISABLE", 10),
        )),
        Register("STATUS", 0x06, 16, (
            F("IMM_READY", 0, "ro"), F("INTX", 3, "ro", "INTx pending"), F("CAP_LIST", 4, "ro"),
            F("66MHZ", 5, "ro"), F("FBB", 7, "ro"), F("MDPE", 8, "rw1c"),
            F("DEVSEL", "10:9", "ro"), F("STA", 11, "rw1c"), F("RTA", 12, "rw1c"), F("RMA", 13, "rw1c"),
            F("SSE", 14, "rw1c"), F("DPE", 15, "rw1c"),
        )),
        Register("REVISION", 0x08, 8, kind="ro"),
        Register("PROG_IF", 0x09, 8, kind="ro"),
        Register("SUBCLASS", 0x0A, 8, kind="ro"),
        Register("CLASS", 0x0B, 8, kind="ro"),
        Register("CACHE_LINE", 0x0C, 8),
        Register("LATENCY", 0x0D, 8),
        Register("HEADER_TYPE", 0x0E, 8, (F("LAYOUT", "6:0", "ro", values={0: "normal", 1: "bridge", 2: "cardbus"}),
                                            F("MULTIFUNCTION", 7, "ro")), kind="ro"),
        Register("BIST", 0x0F, 8),
        *(Register(f"BAR{i}", 0x10 + 4 * i, 32, _BAR) for i in range(6)),
        Register("CARDBUS_CIS", 0x28, 32, kind="ro"),
        Register("SUBSYSTEM_VENDOR_ID", 0x2C, 16, kind="ro"),
        Register("SUBSYSTEM_ID", 0x2E, 16, kind="ro"),
        Register("ROM", 0x30, 32, (F("ENABLE", 0), F("ADDR", "31:11"))),
        Register("CAP_PTR", 0x34, 8, kind="ro"),
        Register("INT_LINE", 0x3C, 8),
        Register("INT_PIN", 0x3D, 8, kind="ro"),
        Register("MIN_GNT", 0x3E, 8, kind="ro"),
        Register("MAX_LAT", 0x3F, 8, kind="ro"),
    ],
    source="PCI Local Bus 3.0 6.1; linux include/uapi/linux/pci_regs.h",
)

# Capability IDs (pci_regs.h PCI_CAP_ID_*) for pretty-printing the capability walk.
CAP_NAMES = {
    0x01: "power-management", 0x05: "msi", 0x09: "vendor-specific", 0x0D: "bridge-subsystem-vid",
    0x10: "pci-express", 0x11: "msi-x", 0x12: "sata", 0x13: "advanced-features",
}
EXT_CAP_NAMES = {0x01: "aer", 0x02: "vc", 0x03: "dsn", 0x0B: "vendor-specific", 0x0D: "acs", 0x0E: "ari",
                 0x10: "sr-iov", 0x15: "resizable-bar", 0x17: "tph", 0x18: "ltr", 0x19: "secondary-pcie"}
