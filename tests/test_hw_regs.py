"""Register maps: decode/encode, pretty print, read-back, RW1C-aware writes, doorbells never RMW'd.

The fake backend logs every access and models register semantics (RW1C status bits, a
doorbell that must never be read), so these tests see exactly which loads and stores happened.
"""

from __future__ import annotations

import pytest

from fsproto.errors import AccessDenied, HardwareError, RegionOutOfRange, UsageError
from fsproto.hw import regs as bind_regs
from fsproto.hw.backends import FakeBackend
from fsproto.hw.region import Region
from fsproto.hw.regmaps import AHCI_HBA, AHCI_PORT, NVME, PCI_CONFIG, ahci_port, nvme_doorbell_offset, nvme_with_doorbells
from fsproto.hw.regs import F, Field, Register

QEMU_CAP = 0x004008200F0107FF  # QEMU 10's NVMe CAP (the qtest tests read it live)


@pytest.fixture
def nvme():
    fake = FakeBackend(0x2000, name="fake-nvme")
    fake.poke_raw(0x00, 8, QEMU_CAP)
    fake.poke_raw(0x08, 4, 0x00010400)
    return fake, NVME.bind(Region(fake))


def test_decode_fields_of_a_64_bit_register(nvme):
    fake, regs = nvme
    cap = regs.CAP
    assert int(cap) == QEMU_CAP
    assert (cap.MQES, cap.CQR, cap.TO, cap.DSTRD, cap.MPSMIN, cap.MPSMAX) == (2047, 1, 15, 0, 0, 4)
    assert regs.get("VS.MJR") == 1 and regs.get("VS.MNR") == 4
    assert fake.accesses[0].width == 8  # CAP is read as one 64-bit access
    assert "MQES=0x7ff" in repr(cap) and repr(cap).startswith("CAP")
    with pytest.raises(AttributeError):
        cap.NOPE


def test_set_is_read_modify_write_that_keeps_other_fields(nvme):
    fake, regs = nvme
    fake.poke_raw(0x14, 4, 0x00460000)  # CC: IOSQES=6, IOCQES=4 already
    back = regs.set("CC", EN=1)
    assert int(back) == 0x00460001 and back.EN == 1
    stores = [a for a in fake.accesses if a.op == "w"]
    assert [(a.offset, a.width, a.value) for a in stores] == [(0x14, 4, 0x00460001)]


def test_set_writes_zero_to_rw1c_bits_so_pending_status_survives():
    fake = FakeBackend(0x200)
    port_is = 0x100 + 0x10

    def rw1c(width: int, value: int) -> None:  # write 1 to clear
        fake.poke_raw(port_is, 4, fake.peek_raw(port_is, 4) & ~value)

    fake.on_write[port_is] = rw1c
    fake.poke_raw(0x100 + 0x18, 4, 0x00000010)  # PxCMD.FRE=1
    fake.poke_raw(port_is, 4, (1 << 30) | 1)  # TFES and DHRS pending
    port = ahci_port(Region(fake), 0)
    port.set("CMD", ST=1)
    assert fake.peek_raw(0x118, 4) == 0x11
    port.clear("IS", "TFES")
    assert port.IS.TFES == 0 and port.IS.DHRS == 1  # only the named bit was cleared
    assert [a.value for a in fake.accesses if a.op == "w" and a.offset == port_is] == [1 << 30]
    with pytest.raises(UsageError, match="clear"):
        port.set("IS", TFES=1)
    with pytest.raises(UsageError, match="rw1c"):
        port.clear("CMD", "ST")


def test_set_never_rewrites_write_1_to_set_bits():
    fake = FakeBackend(0x200)
    fake.poke_raw(0x100 + 0x38, 4, 0b101)  # PxCI: slots 0 and 2 outstanding
    port = ahci_port(Region(fake), 0)
    with pytest.raises(UsageError):
        port.set("CI", CI=1)  # w1s: a RMW would re-issue slots 0 and 2
    port.write("CI", 1 << 3)  # issuing a slot is a plain one-bit store
    assert [(a.op, a.value) for a in fake.accesses if a.op == "w"] == [("w", 1 << 3)]


def test_doorbells_are_written_and_never_read():
    fake = FakeBackend(0x2000)

    def no_reads(width: int) -> int:
        raise AssertionError("a doorbell was read")

    dstrd = 1
    bells = nvme_with_doorbells(2, dstrd)
    for name in ("SQ0TDBL", "CQ0HDBL", "SQ1TDBL", "CQ1HDBL"):
        fake.on_read[bells[name].offset] = no_reads
    regs = bells.bind(Region(fake))
    assert bells["CQ1HDBL"].offset == nvme_doorbell_offset(1, completion=True, dstrd=1) == 0x1000 + 3 * 8
    regs.ring("SQ1TDBL", 5)
    assert regs.write("CQ0HDBL", 1) is None
    with pytest.raises(UsageError, match="never read-modify-written"):
        regs.set("SQ0TDBL", SQT=1)
    with pytest.raises(UsageError, match="write-only"):
        regs.read("SQ0TDBL")
    with pytest.raises(UsageError):
        regs.ring("CC", 1)
    assert "SQ0TDBL" not in regs.dump()
    assert [(a.op, a.offset) for a in fake.accesses[:2]] == [("w", 0x1010), ("w", 0x1008)]
    assert all(a.op == "r" and a.offset < 0x1000 for a in fake.accesses[2:])


def test_write_read_back_and_verify_detects_bits_that_did_not_stick(nvme):
    fake, regs = nvme
    fake.on_write[0x24] = lambda width, value: fake.poke_raw(0x24, 4, value & 0x0FFF0FFF)  # AQA reserved bits
    assert int(regs.write("AQA", 0x001F001F, verify=True)) == 0x001F001F
    fake.on_write[0x14] = lambda width, value: None  # CC locked: writes ignored
    with pytest.raises(HardwareError, match="did not stick"):
        regs.write("CC", 1, verify=True)
    assert int(regs.write("CC", 1)) == 0  # without verify: the read-back is returned to look at


def test_read_only_registers_and_fields_refuse_writes(nvme):
    _fake, regs = nvme
    with pytest.raises(AccessDenied):
        regs.write("CAP", 0)
    with pytest.raises(UsageError, match="ro"):
        regs.set("CSTS", RDY=1)
    with pytest.raises(UsageError, match="does not fit"):
        regs.set("CC", IOSQES=16)
    with pytest.raises(UsageError, match="no field"):
        regs.set("CC", NOPE=1)
    with pytest.raises(UsageError, match="no register"):
        regs.read("NOPE")


def test_64_bit_registers_follow_split64(nvme):
    fake, _ = nvme
    regs = NVME.bind(Region(fake, split64=True))
    regs.write("ASQ", 0x1_2345_6000)
    assert [(a.offset, a.width) for a in fake.accesses if a.op == "w"] == [(0x28, 4), (0x2C, 4)]
    assert regs.ASQ.ASQB == 0x1_2345_6000 >> 12


def test_encode_decode_roundtrip_for_every_declared_register():
    for regmap in (NVME, AHCI_HBA, AHCI_PORT, PCI_CONFIG):
        for reg in regmap:
            rw = [f for f in reg.fields if f.access == "rw"]
            values = {f.name: (1 << f.width) - 1 - (i % 2) for i, f in enumerate(rw)}
            encoded = reg.encode(**values)
            decoded = reg.decode(encoded)
            assert all(decoded[k] == v for k, v in values.items()), reg.name
            assert reg.format(encoded).startswith(reg.name)


def test_spec_offsets_of_the_maps():
    assert [NVME[n].offset for n in ("CAP", "VS", "CC", "CSTS", "AQA", "ASQ", "ACQ")] == [0, 8, 0x14, 0x1C, 0x24, 0x28, 0x30]
    assert (NVME["CC"].field("IOSQES").lsb, NVME["CSTS"].field("SHST").msb) == (16, 3)
    assert [AHCI_PORT[n].offset for n in ("CMD", "TFD", "SIG", "SSTS", "CI")] == [0x18, 0x20, 0x24, 0x28, 0x38]
    assert AHCI_HBA["CAP"].field("S64A").lsb == 31 and AHCI_HBA["PI"].offset == 0x0C
    assert PCI_CONFIG["COMMAND"].field("BME").lsb == 2 and PCI_CONFIG["CAP_PTR"].offset == 0x34


def test_declarations_are_checked():
    with pytest.raises(ValueError):
        Register("X", 2, 32)  # misaligned
    with pytest.raises(ValueError):
        Register("X", 0, 16, (F("Y", "16:0"),))  # field past the register
    with pytest.raises(ValueError):
        Field("Y", 1, 3)
    assert F("A", "7:4").mask == 0xF0 and F("B", 3).mask == 8


def test_binding_must_fit_the_region():
    with pytest.raises(RegionOutOfRange):
        NVME.bind(Region(FakeBackend(0x20)))
    with pytest.raises(RegionOutOfRange):
        ahci_port(Region(FakeBackend(0x1000)), 31)  # port 31 ends past 0x1000
    with pytest.raises(UsageError):
        bind_regs(Region(FakeBackend(0x100)), "nope")
    assert bind_regs(Region(FakeBackend(0x100)), "pci").map is PCI_CONFIG


def test_dry_run_writes_are_logged_not_read_back(nvme):
    fake, _ = nvme
    region = Region(fake, dry_run=True)
    regs = NVME.bind(region)
    assert regs.set("CC", EN=1) is None
    assert fake.peek_raw(0x14, 4) == 0 and region.log[0].value == 1
    assert not [a for a in fake.accesses if a.op == "w"]


def test_wait_polls_until_the_field_changes_and_is_bounded(nvme):
    from fsproto.errors import ControllerError

    fake, regs = nvme
    reads = {"n": 0}

    def csts(width: int) -> int:  # RDY goes to 1 on the third read, like a controller coming up
        reads["n"] += 1
        return 1 if reads["n"] >= 3 else 0

    fake.on_read[0x1C] = csts
    assert regs.wait("CSTS.RDY", 1, timeout=30) == 3
    fake.on_read[0x1C] = lambda width: 0b10  # CFS set, never ready
    with pytest.raises(ControllerError, match="CSTS.RDY is still 0x0"):
        regs.wait("CSTS.RDY", 1, timeout=0.01)
