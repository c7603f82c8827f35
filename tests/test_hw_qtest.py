"""The qtest backend against QEMU's device models: width-exactness seen by QEMU, NVMe/AHCI
registers, guest DMA memory, and QEMU always reaped.

QEMU's ``memory_region_ops_read/write`` trace reports the size of every access a device model
receives. Devices are chosen so the model accepts the width unchanged (hardware.md 4):
pci-testdev's BAR0 takes 1-byte accesses, the NVMe controller 2 and 4, edu's DMA registers 4
and 8. A bulk copy is the negative control: QEMU sees it split, so the trace can tell.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest

from fsproto.blockdev.mmio import MmioBlockDevice
from fsproto.errors import HardwareNotFound, QtestError, RegionOutOfRange
from fsproto.hw.backends.qtest import QtestMachine
from fsproto.hw.regmaps import AHCI_HBA, NVME

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86 (tools/setup.sh)"),
    pytest.mark.timeout(180),
]

_OPS = re.compile(r"memory_region_ops_(read|write) .*addr (0x[0-9a-f]+) value (0x[0-9a-f]+) size (\d+) name '([^']+)'")


class Traced:
    """The machine plus a cursor in its trace file: accesses() returns what happened since mark()."""

    def __init__(self, machine: QtestMachine) -> None:
        self.m = machine
        self.pos = 0

    def mark(self) -> None:
        self.pos = os.path.getsize(self.m.trace_path)

    def accesses(self, device: str) -> list[tuple[str, int, int, int]]:
        with open(self.m.trace_path) as f:
            f.seek(self.pos)
            text = f.read()
        out = []
        for m in _OPS.finditer(text):
            if m.group(5) == device:
                out.append((m.group(1), int(m.group(2), 16), int(m.group(4)), int(m.group(3), 16)))
        return out


@pytest.fixture(scope="module")
def qemu(tmp_path_factory):
    img = tmp_path_factory.mktemp("qtest") / "nvme.img"
    img.write_bytes(b"\0" * (1 << 20))
    sata = img.with_name("sata.img")
    sata.write_bytes(b"\0" * (1 << 20))
    machine = QtestMachine(
        [
            "-drive", f"file={img},if=none,id=d0,format=raw",
            "-drive", f"file={sata},if=none,id=a0,format=raw",
            "-device", "ide-hd,drive=a0,bus=ide.0",
            "-device", "nvme,serial=fsproto,drive=d0,addr=04.0",
            "-device", "edu,addr=05.0",
            "-device", "pci-testdev,addr=06.0",
        ],
        trace=["memory_region_ops_read", "memory_region_ops_write"],
    )
    try:
        bars = {}
        for bdf in ("00:04.0", "00:05.0", "00:06.0"):
            fn = machine.pci(bdf)
            fn.assign_bars()
            bars[bdf] = fn.map_bar(0)
        yield Traced(machine), bars
    finally:
        proc, workdir = machine._proc, machine.workdir
        machine.close()
        assert proc.poll() is not None, "QEMU was not reaped"
        assert not os.path.exists(workdir)


def test_8_bit_accesses_are_single_byte_accesses(qemu):
    t, bars = qemu
    testdev = bars["00:06.0"]
    t.mark()
    testdev.w8(0x8, 0x5A)
    testdev.r8(0x8)
    base = testdev.backend.base
    assert t.accesses("pci-testdev-mmio") == [("write", base + 8, 1, 0x5A), ("read", base + 8, 1, 0)]


@pytest.mark.parametrize("bits", [16, 32])
def test_16_and_32_bit_accesses_reach_nvme_as_one_access(qemu, bits):
    t, bars = qemu
    nvme = bars["00:04.0"]
    base = nvme.backend.base
    t.mark()
    nvme.poke(0x24, 0x001F, bits)  # AQA: plain read/write register
    value = nvme.peek(0x24, bits)
    assert value == 0x001F
    assert t.accesses("nvme") == [("write", base + 0x24, bits // 8, 0x1F), ("read", base + 0x24, bits // 8, 0x1F)]


def test_64_bit_access_is_one_8_byte_access_and_split_is_two(qemu):
    t, bars = qemu
    edu = bars["00:05.0"]
    base = edu.backend.base
    t.mark()
    edu.w64(0x80, 0x1_2345_6789)  # edu's DMA source address: a 64-bit register
    assert edu.r64(0x80) == 0x1_2345_6789
    assert t.accesses("edu-mmio") == [("write", base + 0x80, 8, 0x1_2345_6789), ("read", base + 0x80, 8, 0x1_2345_6789)]
    t.mark()
    edu.w64_lh(0x80, 0xAABB_CCDD_0000_0001)
    assert [(op, addr - base, size) for op, addr, size, _ in t.accesses("edu-mmio")] == [
        ("write", 0x80, 4), ("write", 0x84, 4)]


def test_negative_control_a_bulk_copy_is_seen_as_many_accesses(qemu):
    t, bars = qemu
    t.mark()
    bars["00:06.0"].read(0, 8)  # memory-style copy: never used for registers
    assert [size for _op, _a, size, _v in t.accesses("pci-testdev-mmio")] == [1] * 8


def test_nvme_registers_decode_and_controller_enables(qemu):
    t, bars = qemu
    regs = NVME.bind(bars["00:04.0"])
    cap = regs.CAP
    assert cap.MQES > 0 and cap.TO > 0 and cap.CSS & 1  # NVM command set; behaviour, not versions
    assert regs.VS.MJR == 1
    fn = t.m.pci("00:04.0")
    assert (fn.vendor_id, fn.device_id, fn.class_code) == (0x1B36, 0x0010, 0x010802)
    assert fn.regs.COMMAND.MEM == 1 and any(c.name == "msi-x" for c in fn.capabilities())
    sq, cq = t.m.malloc(4096), t.m.malloc(4096)
    try:
        regs.write("AQA", regs.map["AQA"].encode(ASQS=31, ACQS=31), verify=True)
        regs.write("ASQ", sq.device_addr(), verify=True)
        regs.write("ACQ", cq.device_addr(), verify=True)
        fn.enable_bus_master()
        regs.set("CC", IOSQES=6, IOCQES=4, EN=1)
        regs.wait("CSTS.RDY", 1, timeout=cap.TO * 0.5)
        assert regs.CSTS.CFS == 0
        regs.set("CC", SHN=1)
        assert regs.CSTS.SHST == 2  # shutdown complete
        regs.set("CC", EN=0, SHN=0)
        assert regs.CSTS.RDY == 0
    finally:
        sq.free()
        cq.free()


def test_ahci_hba_registers(qemu):
    t, _ = qemu
    ahci = t.m.pci("00:1f.2")  # q35's built-in ICH9 AHCI
    assert ahci.class_code == 0x010601
    ahci.assign_bars()
    hba = AHCI_HBA.bind(ahci.map_bar(5))
    assert hba.CAP.NP + 1 == bin(int(hba.PI)).count("1") and hba.VS.MJR == 1
    hba.set("GHC", AE=1)
    assert hba.GHC.AE == 1


def test_ahci_port_rw1c_status_on_the_device_model(qemu):
    """FIS receive makes QEMU post a D2H register FIS and set PxIS.DHRS (RW1C): a set() of another
    register must leave it pending, clear() must write exactly that bit and clear it."""
    from fsproto.hw.regmaps import ahci_port

    t, _ = qemu
    ahci = t.m.pci("00:1f.2")
    ahci.assign_bars()
    ahci.enable_bus_master()  # the HBA writes received FISes into guest memory
    abar = ahci.map_bar(5)
    port = ahci_port(abar, 0)
    assert port.SSTS.DET == 3  # the disk on port 0 is present
    clb, fis = t.m.malloc(1024, align=1024), t.m.malloc(256, align=256)
    try:
        port.write("CLB", clb.device_addr())
        port.write("FB", fis.device_addr())
        port.set("CMD", FRE=1)
        assert port.CMD.FR == 1 and port.IS.DHRS == 1
        assert fis.read(0x40, 1) == b"\x34"  # a D2H register FIS landed in guest memory
        port.set("CMD", SUD=1)  # a read-modify-write of another register
        assert port.IS.DHRS == 1  # still pending
        base = abar.backend.base + 0x100
        t.mark()
        port.clear("IS", "DHRS")
        assert port.IS.DHRS == 0
        writes = [(addr - base, value) for op, addr, _size, value in t.accesses("ahci") if op == "write"]
        assert writes == [(0x10, 1)]
    finally:
        port.set("CMD", FRE=0)
        clb.free()
        fis.free()


def test_guest_memory_allocator_and_dma_buffers(qemu):
    t, _ = qemu
    a = t.m.malloc(10000)
    b = t.m.malloc(4096, align=1 << 16)
    try:
        assert a.device_addr() % 4096 == 0 and b.device_addr() % (1 << 16) == 0
        assert b.device_addr() >= a.device_addr() + 10000 or b.device_addr() + 4096 <= a.device_addr()
        payload = bytes(range(256)) * 8
        a.write(100, payload)
        assert a.read(100, len(payload)) == payload and a.read(0, 100) == bytes(100)
        assert a.region.r32(100) == 0x03020100
        with pytest.raises(RegionOutOfRange):
            a.device_addr(10000)
        first = a.device_addr()
        a.free()
        c = t.m.malloc(4096)
        assert c.device_addr() == first and c.read(0, 4096) == bytes(4096)  # reused, zeroed
        c.free()
    finally:
        a.free()
        b.free()


def test_block_device_over_guest_memory(qemu):
    t, _ = qemu
    buf = t.m.malloc(64 * 512)
    try:
        with MmioBlockDevice(buf.region) as dev:
            dev.write(5, b"A" * 512 + b"B" * 512)
            assert dev.read(6) == b"B" * 512
        assert buf.read(5 * 512, 4) == b"AAAA"
    finally:
        buf.free()


def test_missing_function_and_unassigned_bar(qemu):
    t, _ = qemu
    with pytest.raises(HardwareNotFound):
        t.m.pci("00:09.0")
    with pytest.raises(HardwareNotFound, match="assign_bars"):
        t.m.pci("00:00.0").map_bar(0)  # the host bridge: nothing was assigned


def test_a_dead_qemu_gives_typed_errors_and_is_reaped():
    m = QtestMachine(timeout=10)
    proc, workdir = m._proc, m.workdir
    try:
        os.kill(proc.pid, 9)
        proc.wait(timeout=10)
        with pytest.raises(QtestError):
            m.load(0, 4)
        with pytest.raises(QtestError, match="closed"):
            m.load(0, 4)
    finally:
        m.close()
    assert proc.poll() is not None and not os.path.exists(workdir)


def test_bad_qemu_arguments_fail_start_with_qemus_message():
    with pytest.raises(QtestError, match="no-such-device"):
        QtestMachine(["-device", "no-such-device"], timeout=20)


def test_missing_qemu_binary():
    with pytest.raises(HardwareNotFound, match="apt-get install"):
        QtestMachine(qemu="qemu-system-nonexistent")
