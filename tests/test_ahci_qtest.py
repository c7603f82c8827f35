"""fsproto's AHCI driver against QEMU's ICH9 AHCI over qtest: IDENTIFY DEVICE, READ/WRITE DMA EXT
round trips checked in the backing image, scattered PRDTs, typed errors and recovery, PxCI
written once per command, and the CLI on ``ahci:qtest:IMAGE``."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from fsproto.blockdev.ahci import AhciBlockDevice
from fsproto.cli import cli
from fsproto.errors import CommandError, ControllerError, HardwareNotFound, LbaOutOfRange, OutOfRange
from fsproto.hw.ahci import ATA_READ_DMA_EXT, AhciController
from fsproto.hw.nvme import attach

from qtest_dma import Scattered, zeroed_image

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86 (tools/setup.sh)"),
    pytest.mark.timeout(120),
]

SECTORS = 8192
_OPS = re.compile(r"memory_region_ops_(read|write) .*addr (0x[0-9a-f]+) value (0x[0-9a-f]+) size (\d+) name 'ahci'")


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 13 + seed + i // 512) & 0xFF for i in range(n))


@pytest.fixture
def image(tmp_path):
    return zeroed_image(tmp_path / "sata.img", SECTORS)


@pytest.fixture
def hba(image):
    att = attach.qtest(image, controller="ahci", serial="SATA-SN-7", trace=["memory_region_ops_write"])
    h = AhciController(att.bar, att.pci, att.alloc, name=att.name)
    try:
        yield h, att
    finally:
        h.close()
        att.close()


def test_identify_device(hba):
    h, _ = hba
    assert h.cap.S64A == 1 and h.regs.GHC.AE == 1
    port = h.port(h.first_disk_port())
    ident = port.identify
    assert ident.serial == "SATA-SN-7" and ident.model == "QEMU HARDDISK"
    assert ident.lba48 and ident.sectors == SECTORS and ident.logical_sector == 512


def test_read_write_dma_ext_round_trip_in_the_image(hba, image):
    h, att = hba
    port = h.port(0)
    buf = att.alloc(64 << 10)
    data = pattern(100 * 512, 5)
    buf.write(0, data)
    port.write(17, 100, buf)
    port.flush()
    with open(image, "rb") as f:
        f.seek(17 * 512)
        assert f.read(len(data)) == data
    back = att.alloc(64 << 10)
    port.read(17, 100, back)
    assert back.read(0, len(data)) == data


def test_scattered_pages_make_a_multi_entry_prdt(hba, image):
    h, att = hba
    port = h.port(0)
    buf = Scattered(att.alloc, 4)
    runs = port._prdt(buf, 0, 4 * 4096)
    assert len(runs) == 4 and all(n == 4096 for _a, n in runs)
    data = pattern(4 * 4096, 9)
    with open(image, "r+b") as f:
        f.seek(300 * 512)
        f.write(data)
    port.read(300, 32, buf)
    assert buf.read(0, len(data)) == data


def test_errors_are_typed_and_the_port_recovers(hba):
    h, att = hba
    port = h.port(0)
    buf = att.alloc(4096)
    with pytest.raises(LbaOutOfRange) as exc:
        port.read(SECTORS - 1, 2, buf)
    assert isinstance(exc.value, OutOfRange) and exc.value.lba == SECTORS - 1
    with pytest.raises(CommandError) as exc:  # past the end as the disk itself answers it
        port.execute(ATA_READ_DMA_EXT, lba=SECTORS + 10, count=1, buf=buf, length=512)
    assert exc.value.status["status"] & 1 and exc.value.status["error"] and "ATA status" in str(exc.value)
    port.read(0, 1, buf)  # the port was stopped, cleared and restarted
    with pytest.raises(HardwareNotFound):
        h.port(1)  # implemented, no disk
    with pytest.raises(HardwareNotFound):
        h.port(31)  # not implemented


def test_command_issue_is_one_write_per_command(hba):
    h, att = hba
    port = h.port(0)
    buf = att.alloc(4096)
    mark = os.path.getsize(att.machine.trace_path)
    for lba in range(5):
        port.read(lba, 1, buf)
    with open(att.machine.trace_path) as f:
        f.seek(mark)
        text = f.read()
    ci = att.bar.backend.base + 0x100 + 0x38
    writes = [(int(m.group(2), 16), int(m.group(3), 16), int(m.group(4))) for m in _OPS.finditer(text)]
    assert [w for w in writes if w[0] == ci] == [(ci, 1, 4)] * 5
    assert all(size == 4 for _a, _v, size in writes)


def test_block_device_and_closed_hba(hba, image):
    h, att = hba
    dev = AhciBlockDevice(h, 0)
    assert (dev.block_size, dev.num_blocks) == (512, SECTORS)
    data = pattern(700 * 512, 2)  # several 128 KiB commands
    dev.write(40, data)
    dev.flush()
    assert dev.read(40, 700) == data
    with pytest.raises(OutOfRange):
        dev.read(SECTORS, 1)
    h.close()
    with pytest.raises(ControllerError):
        h.port(0).read(0, 1, att.alloc(4096))


def test_cli_mkfs_and_ls_on_ahci(tmp_path, capsys):
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * (2 << 20))
    spec = f"ahci:qtest:{img}"
    assert cli(["mkfs", "--format", "cms", spec]) == 0
    src = tmp_path / "SATA.FILE"
    src.write_bytes(b"over ahci\n")
    assert cli(["put", spec, str(src)]) == 0
    capsys.readouterr()
    assert cli(["ls", spec]) == 0 and capsys.readouterr().out.split() == ["SATA.FILE"]
    assert cli(["cat", str(img), "SATA.FILE"]) == 0 and capsys.readouterr().out == "over ahci\n"


def test_ncq_keeps_32_commands_in_flight_and_the_block_device_uses_it(image):
    from fsproto.hw.ahci_ncq import NcqQueue

    att = attach.qtest(image, controller="ahci")
    try:
        hba = AhciController(att.bar, att.pci, att.alloc)
        port = hba.port(hba.first_disk_port())
        assert port.identify.ncq_depth == 32  # QEMU's ide-hd: IDENTIFY word 76 bit 8, word 75 = 31
        q = NcqQueue(port)
        buf = att.alloc(32 * 4096)
        chunks = [pattern(4096, i) for i in range(32)]
        for i, chunk in enumerate(chunks):
            buf.write(i * 4096, chunk)
        q.run([(True, 8 * (31 - i), 8, buf, i * 4096) for i in range(32)])  # WRITE FPDMA QUEUED x 32
        assert q.peak == 32
        with open(image, "rb") as f:
            disk = f.read(32 * 4096)
        assert disk == b"".join(chunks[::-1])  # each tag's data at its own LBA
        buf.fill(0)
        q.run([(False, 8 * i, 8, buf, i * 4096) for i in range(32)])
        assert buf.read(0, 32 * 4096) == disk
        with pytest.raises(LbaOutOfRange):
            q.run([(False, port.identify.sectors - 1, 2, buf, 0)])
        q.free()
        dev = AhciBlockDevice(hba, port.n)
        assert dev.ncq is not None and dev.ncq.depth == 16
        data = pattern(2 << 20, 5)  # 2 MiB: 16 commands of 128 KiB in flight
        dev.write(100, data)
        assert dev.read(100, 4096) == data and dev.ncq.peak == 16
        with open(image, "rb") as f:
            f.seek(100 * 512)
            assert f.read(len(data)) == data
        dev.close()
    finally:
        att.close()
