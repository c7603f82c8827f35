"""fsproto's NVMe driver against QEMU's NVMe model over qtest (no guest): Identify, data round
trips checked in the backing file, PRP lists, typed status errors, phase-tag wrap, bring-up
over a controller left enabled, shutdown, and the MMIO trace QEMU records.

QEMU's ``pci_nvme_mmio_read/write`` trace events report every access the NVMe model receives,
with its size: that is how the tests see that each register access is one access of 32 bits
and that doorbells are only written.
"""

from __future__ import annotations

import os
import random
import re
import shutil

import pytest

from fsproto.blockdev.nvme import NvmeBlockDevice
from fsproto.errors import (
    CommandError, CommandTimeout, ControllerError, DeviceError, HardwareNotFound, LbaOutOfRange, MediaError,
    OutOfRange, ReadOnlyError,
)
from fsproto.hw.nvme import attach
from fsproto.hw.nvme.commands import NVM_READ, Completion, status_error
from fsproto.hw.nvme.controller import NvmeController

from qtest_dma import Scattered, zeroed_image

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86 (tools/setup.sh)"),
    pytest.mark.timeout(120),
]

BLOCKS = 8192  # 4 MiB image of 512-byte blocks
_MMIO = re.compile(r"pci_nvme_mmio_(read|write) addr (0x[0-9a-f]+)(?: data (0x[0-9a-f]+))? size (\d+)")


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed + i // 512) & 0xFF for i in range(n))


@pytest.fixture
def image(tmp_path):
    return zeroed_image(tmp_path / "nvme.img", BLOCKS)


@pytest.fixture
def ctrl(image):
    att = attach.qtest(image, serial="FSPROTO-SN42", trace=["pci_nvme_mmio_read", "pci_nvme_mmio_write"])
    c = NvmeController(att.bar, att.pci, att.alloc, name=att.name)
    try:
        yield c, att
    finally:
        c.close()
        att.close()


def mmio(att, since: int = 0) -> list[tuple[str, int, int, int | None]]:
    """(op, offset, size in bytes, data) of every access the NVMe model saw after byte *since*."""
    with open(att.machine.trace_path) as f:
        f.seek(since)
        text = f.read()
    return [(m.group(1), int(m.group(2), 16), int(m.group(4)), int(m.group(3), 16) if m.group(3) else None)
            for m in _MMIO.finditer(text)]


def test_identify_returns_the_serial_given_to_qemu(ctrl):
    c, _ = ctrl
    assert c.identify.serial == "FSPROTO-SN42"
    assert c.identify.vid == 0x1B36  # Red Hat's QEMU vendor id
    assert c.identify.nn >= 1 and c.identify.sqes & 0xF == 6 and c.identify.cqes & 0xF == 4
    ns = c.namespace(1)
    assert (ns.blocks, ns.block_size) == (BLOCKS, 512)  # the image size, as the controller reports it
    assert c.cap.MQES >= 1 and c.ready_timeout == c.cap.TO * 0.5


def test_write_then_read_round_trip_lands_in_the_image(ctrl, image):
    c, _ = ctrl
    data = pattern(4 * 512, 1)
    out, back = c.alloc(4096), c.alloc(4096)
    out.write(0, data)
    c.write(1, 100, 4, out)
    c.flush(1)
    c.read(1, 100, 4, back)
    assert back.read(0, len(data)) == data
    with open(image, "rb") as f:  # QEMU wrote it to the backing file: the offline view agrees
        f.seek(100 * 512)
        assert f.read(len(data)) == data


def test_prp_list_transfer_spanning_several_pages(ctrl, image):
    c, _ = ctrl
    buf = c.alloc(8 * 4096)
    data = pattern(24 * 512, 3)  # 12 KiB at buffer offset 512: touches 4 pages, so PRP2 is a list
    buf.write(512, data)
    prp1, prp2 = c.prp.build(buf, 512, len(data))
    assert prp1 == buf.device_addr(512) and prp2 == c.prp.list.device_addr(0)
    entries = c.prp.list.read(0, 24)
    assert [int.from_bytes(entries[i : i + 8], "little") for i in (0, 8, 16)] == [
        buf.device_addr(4096), buf.device_addr(8192), buf.device_addr(12288)]
    c.write(1, 8, 24, buf, 512)
    with open(image, "rb") as f:
        f.seek(8 * 512)
        assert f.read(len(data)) == data
    other = c.alloc(8 * 4096)
    c.read(1, 8, 24, other, 1024)  # a different offset: different PRP1 and list
    assert other.read(1024, len(data)) == data


def test_prp_list_over_scattered_pages(ctrl, image):
    c, _ = ctrl
    buf = Scattered(c.alloc, 6)
    assert buf.device_addr(4096) < buf.device_addr(0)  # really out of order
    data = pattern(5 * 4096, 4)
    buf.write(2048, data)  # PRP1 mid-page, then 5 more pages through the list
    c.write(1, 40, len(data) // 512, buf, 2048)
    with open(image, "rb") as f:
        f.seek(40 * 512)
        assert f.read(len(data)) == data
    with open(image, "r+b") as f:
        f.seek(500 * 512)
        f.write(pattern(6 * 4096, 8))
    c.read(1, 500, 48, buf, 0)
    assert buf.read(0, 6 * 4096) == pattern(6 * 4096, 8)


def test_out_of_range_lba_is_a_typed_error_from_the_controller(ctrl):
    c, _ = ctrl
    buf = c.alloc(4096)
    with pytest.raises(LbaOutOfRange) as exc:
        c.read(1, BLOCKS - 1, 2, buf)  # the last block plus one past the end
    e = exc.value
    assert isinstance(e, OutOfRange) and isinstance(e, CommandError)
    assert e.status["sc"] == 0x80 and e.status["sct"] == 0 and e.lba == BLOCKS - 1 and e.opcode == NVM_READ
    assert "LBA out of range" in str(e) and "lba 8191" in str(e)
    c.read(1, BLOCKS - 1, 1, buf)  # the queue is still usable after an error completion


def test_other_status_codes_are_decoded(ctrl):
    c, _ = ctrl
    with pytest.raises(CommandError) as exc:  # an inactive namespace: QEMU versions answer SC 02h or 0Bh
        c.io.execute(NVM_READ, timeout=c.command_timeout, admin=False, nsid=77, prp1=c.prp.list.device_addr(0))
    assert not isinstance(exc.value, LbaOutOfRange) and exc.value.status["sc"] in (0x02, 0x0B)
    assert "invalid" in str(exc.value) and "Read failed" in str(exc.value)
    media = Completion.parse(bytes(12) + ((0x2 << 8 | 0x81) << 17 | 1 << 31 | 1 << 16 | 5).to_bytes(4, "little"))
    err = status_error(media, opcode=NVM_READ, admin=False, device="d", lba=9)
    assert (media.sct, media.sc, media.dnr, media.cid) == (2, 0x81, 1, 5)
    assert type(err) is CommandError and "unrecovered read error" in str(err) and "DNR" in str(err)


def test_phase_tags_survive_many_wraps_of_small_queues(image):
    att = attach.qtest(image)
    try:
        c = NvmeController(att.bar, att.pci, att.alloc, io_entries=3)
        buf = c.alloc(4096)
        for i in range(20):  # 20 commands through a 3-entry ring: the phase flips 6 times
            buf.write(0, pattern(512, i))
            c.write(1, i, 1, buf)
            buf.fill(0, 512)
            c.read(1, i, 1, buf)
            assert buf.read(0, 512) == pattern(512, i)
        assert c.io.commands == 40 and c.io.phase == (40 // 3) % 2 ^ 1
        c.close()
    finally:
        att.close()


def test_poll_without_a_completion_times_out(ctrl):
    c, _ = ctrl
    with pytest.raises(CommandTimeout):
        c.io.poll(cid=999, timeout=0.05)  # nothing was submitted: no entry can arrive


def test_bring_up_over_a_controller_left_enabled(image):
    att = attach.qtest(image, trace=["pci_nvme_mmio_read", "pci_nvme_mmio_write"])
    try:
        first = NvmeController(att.bar, att.pci, att.alloc)
        assert first.regs.CC.EN == 1 and first.regs.CSTS.RDY == 1  # abandoned enabled, like an unbound kernel driver
        mark = os.path.getsize(att.machine.trace_path)
        second = NvmeController(att.bar, att.pci, att.alloc)
        cc_writes = [d for op, off, _s, d in mmio(att, mark) if op == "write" and off == 0x14]
        assert cc_writes[0] & 1 == 0 and cc_writes[1] & 1 == 1  # EN=0 first, then the new enable
        assert second.identify.serial == "fsproto"
        second.close()
        writes = [d for op, off, _s, d in mmio(att) if op == "write" and off == 0x14]
        assert any(d >> 14 & 3 == 1 for d in writes)  # an orderly shutdown (CC.SHN=01) was requested
        assert second.regs.CC.EN == 0
        with pytest.raises(ControllerError):
            second.read(1, 0, 1, second.alloc(4096))  # closed
    finally:
        att.close()


def test_mmio_trace_shows_single_32_bit_accesses_and_write_only_doorbells(ctrl):
    c, att = ctrl
    accesses = mmio(att)
    assert accesses and all(size == 4 for _op, _off, size, _d in accesses)
    assert not [a for a in accesses if a[0] == "read" and a[1] >= 0x1000]  # doorbells are never read
    cap_reads = [off for op, off, _s, _d in accesses[:2]]
    assert cap_reads == [0x0, 0x4]  # CAP: two aligned 32-bit loads, low dword first
    dev = NvmeBlockDevice(c, 1)
    mark = os.path.getsize(att.machine.trace_path)
    before = {q.qid: (q.sq_tail, q.cq_head) for q in c.queues}
    dev.read(0, 8)
    seen = [a for a in mmio(att, mark) if not (a[0] == "read" and a[1] == 0x1C)]  # CSTS polls are allowed
    (q,) = [q for q in c.queues if q.sq_tail != before[q.qid][0]]  # the queue this request went to
    tail, head = before[q.qid]
    # one command: exactly one SQ tail store and one CQ head store of that queue, each the new index
    assert seen == [("write", 0x1000 + 8 * q.qid, 4, (tail + 1) % q.entries),
                    ("write", 0x1004 + 8 * q.qid, 4, (head + 1) % q.entries)]


def test_block_device_round_trips_large_requests_and_refuses_bad_ones(ctrl, image):
    c, _ = ctrl
    dev = NvmeBlockDevice(c, 1)
    assert (dev.block_size, dev.num_blocks) == (512, BLOCKS)
    data = pattern(600 * 512, 9)  # 300 KiB: three commands of at most 128 KiB
    dev.write(1000, data)
    dev.flush()
    assert dev.read(1000, 600) == data
    with open(image, "rb") as f:
        f.seek(1000 * 512)
        assert f.read(len(data)) == data
    with pytest.raises(OutOfRange):
        dev.read(BLOCKS - 1, 2)
    with pytest.raises(HardwareNotFound):
        NvmeBlockDevice(c, 2)
    ro = NvmeBlockDevice(c, 1, read_only=True)
    with pytest.raises(ReadOnlyError):
        ro.write(0, bytes(512))


def test_not_an_nvme_function(image):
    att = attach.qtest(image)
    try:
        ahci = att.machine.pci("00:1f.2")
        ahci.assign_bars()
        with pytest.raises(HardwareNotFound):
            NvmeController(ahci.map_bar(5), ahci, att.alloc)
    finally:
        att.close()


def test_dead_qemu_becomes_a_media_error(image):
    att = attach.qtest(image)
    c = NvmeController(att.bar, att.pci, att.alloc)
    dev = NvmeBlockDevice(c, 1, attachment=att)
    os.killpg(att.machine._proc.pid, 9)
    att.machine._proc.wait()
    with pytest.raises(MediaError):
        dev.read(0, 1)
    with pytest.raises(MediaError):
        dev.close()  # the failed flush is reported, and everything is still released
    assert dev.closed and att.machine._proc.poll() is not None and not os.path.exists(att.machine.workdir)


def test_random_reads_and_writes_match_a_plain_model(ctrl):
    c, _ = ctrl
    dev = NvmeBlockDevice(c, 1)
    model = bytearray(BLOCKS * 512)
    rng = random.Random(6)
    for step in range(120):
        count = rng.choice([1, 2, 7, 64, 255, 256, 257, 600])
        lba = rng.randrange(0, BLOCKS - count)
        if rng.random() < 0.5:
            data = rng.randbytes(count * 512)
            dev.write(lba, data)
            model[lba * 512 : (lba + count) * 512] = data
        else:
            assert dev.read(lba, count) == model[lba * 512 : (lba + count) * 512], f"step {step}"
    assert dev.read(0, BLOCKS) == model


def test_a_forked_child_cannot_touch_the_controller(ctrl):
    c, _ = ctrl
    dev = NvmeBlockDevice(c, 1)
    pid = os.fork()
    if pid == 0:  # the child: DMA memory is MADV_DONTFORK and the queues are the parent's
        try:
            dev.read(0, 1)
            code = 1
        except DeviceError as e:
            code = 0 if "fork" in str(e) else 2
        except BaseException:  # noqa: BLE001
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert dev.read(0, 1) == bytes(512)  # the parent still works


def test_a_4k_namespace_and_open_device_adapting_it(image):
    att = attach.qtest(image, device_props="logical_block_size=4096,physical_block_size=4096")
    try:
        c = NvmeController(att.bar, att.pci, att.alloc)
        ns = c.namespace(1)
        assert (ns.block_size, ns.blocks) == (4096, BLOCKS // 8)  # LBADS 12 from Identify Namespace
        dev = NvmeBlockDevice(c, 1)
        data = pattern(3 * 4096, 5)
        dev.write(7, data)
        assert dev.read(7, 3) == data
        dev.close()
    finally:
        att.close()
    with open(image, "rb") as f:
        f.seek(7 * 4096)
        assert f.read(len(data)) == data
    from fsproto.rawdev import open_device

    spec = f"nvme:qtest:{image},logical_block_size=4096,physical_block_size=4096"
    with open_device(spec, block_size=None) as native:
        assert native.block_size == 4096 and native.read(7, 1) == data[:4096]
    with open_device(spec) as small:  # the default 512-byte blocks, adapted over the 4 KiB namespace
        assert small.block_size == 512 and small.read(57, 8) == data[512:4608]
