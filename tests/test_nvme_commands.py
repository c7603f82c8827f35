"""The rest of fsproto's NVMe command set against QEMU's NVMe model over qtest: SGL and PRP
data pointers (QEMU's trace says which path mapped each command), Write Zeroes and Dataset
Management (trim) through the block device (the image file shows the zeroes and the punched
holes), Abort, a command timeout that ends in a controller reset, and a controller fatal status
(CSTS.CFS) that gives one clear error and no hang.
"""

from __future__ import annotations

import os
import random
import shutil
import time

import pytest

from fsproto.blockdev.image import ImageFile
from fsproto.blockdev.nvme import NvmeBlockDevice
from fsproto.errors import CommandTimeout, ControllerError, MediaError
from fsproto.hw.nvme import attach
from fsproto.hw.nvme import commands as cmd
from fsproto.hw.nvme.controller import NvmeController

from qtest_dma import Scattered, image_blocks, zeroed_image

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86 (tools/setup.sh)"),
    pytest.mark.timeout(60),
]

BLOCKS = 8192


@pytest.fixture
def image(tmp_path):
    return zeroed_image(tmp_path / "nvme.img", BLOCKS)


def trace_lines(att, event: str) -> list[str]:
    with open(att.machine.trace_path) as f:
        return [line for line in f if event in line]


@pytest.mark.parametrize("mode", ["sgl", "prp", "auto"])
def test_sgl_and_prp_data_pointers(image, mode):
    att = attach.qtest(image, trace=["pci_nvme_map_sgl", "pci_nvme_map_prp"])
    try:
        c = NvmeController(att.bar, att.pci, att.alloc, data_pointers=mode)
        assert c.identify.sgl_support == 1  # QEMU: SGLS bits 1:0 = 01 (no alignment needed)
        assert c.sgl == (0 if mode == "prp" else 1)
        rng = random.Random(5)
        contiguous, scattered = c.alloc(8 * 4096), Scattered(c.alloc, 6)
        one, many = rng.randbytes(8 * 4096), rng.randbytes(6 * 4096)
        contiguous.write(0, one)
        scattered.write(0, many)
        c.write(1, 64, 64, contiguous)  # one run: a single Data Block descriptor in SGL1
        c.write(1, 256, 48, scattered)  # six runs: a Last Segment descriptor to six Data Blocks
        assert image_blocks(image, 64, 64) == one and image_blocks(image, 256, 48) == many
        contiguous.fill(0)
        back = Scattered(c.alloc, 6)
        c.read(1, 64, 64, contiguous)
        c.read(1, 256, 48, back)
        assert contiguous.read(0, 8 * 4096) == one and back.read(0, 6 * 4096) == many
        dev = NvmeBlockDevice(c, 1)  # the block device's prepared slots use the same mode
        dev.write(1000, one)
        assert dev.read(1000, 64) == one == image_blocks(image, 1000, 64)
        sgl, prp = trace_lines(att, "pci_nvme_map_sgl"), trace_lines(att, "pci_nvme_map_prp")
        # Admin commands always use PRPs: the three Identify commands of the bring-up.
        if mode == "sgl":
            assert len(sgl) == 6 and len(prp) == 3  # every data command went through QEMU's SGL mapper
            assert sum("type 0x3" in line for line in sgl) == 2  # the scattered ones: Last Segment descriptors
        elif mode == "auto":  # SGLs for the contiguous buffers, PRPs for the scattered pages
            assert len(sgl) == 4 and all("type 0x0" in line for line in sgl) and len(prp) == 3 + 2
        else:
            assert len(prp) == 3 + 6 and not sgl
        c.close()
    finally:
        att.close()


def test_write_zeroes_and_trim_through_the_block_device(image):
    att = attach.qtest(image)
    try:
        c = NvmeController(att.bar, att.pci, att.alloc)
        assert c.identify.oncs & cmd.ONCS_DSM and c.identify.oncs & cmd.ONCS_WRITE_ZEROES
        dev = NvmeBlockDevice(c, 1)
        data = random.Random(9).randbytes(4096 * 512)  # 2 MiB of non-zero data
        dev.write(0, data)
        dev.flush()
        allocated = os.stat(image).st_blocks
        dev.write_zeroes(100, 300)  # Write Zeroes: no data moves, the image holds zeroes
        assert image_blocks(image, 100, 300) == bytes(300 * 512)
        assert image_blocks(image, 99, 1) == data[99 * 512 : 100 * 512]
        assert image_blocks(image, 400, 1) == data[400 * 512 : 401 * 512]
        dev.trim(2048, 2048)  # 1 MiB deallocated: QEMU discards it (discard=unmap) -> a hole
        dev.flush()
        assert dev.read(2048, 2048) == bytes(2048 * 512)  # DLFEAT says deallocated blocks read as 0
        assert image_blocks(image, 2048, 2048) == bytes(2048 * 512)
        assert os.stat(image).st_blocks <= allocated - 1024 * 2  # at least 1 MiB given back
        assert dev.read(0, 100) == data[: 100 * 512] and dev.read(400, 1648) == data[400 * 512 : 2048 * 512]
        c.deallocate(1, [(10, 2), (20, 2)])  # several ranges in one command
        assert image_blocks(image, 10, 2) == image_blocks(image, 20, 2) == bytes(1024)
        assert image_blocks(image, 12, 8) == data[12 * 512 : 20 * 512]
        dev.close()
    finally:
        att.close()


def test_write_zeroes_and_trim_on_a_plain_image(tmp_path):
    path = tmp_path / "plain.img"
    path.write_bytes(b"\xaa" * 64 * 512)
    with ImageFile(str(path), writable=True) as img:
        img.write_zeroes(3, 5)  # the generic fallback: zero-filled writes
        img.trim(10, 4)  # advisory: a plain image keeps its data
        assert img.read(3, 5) == bytes(5 * 512) and img.read(2, 1) == b"\xaa" * 512
        assert img.read(10, 4) == b"\xaa" * 4 * 512


def test_abort_of_an_outstanding_command(image):
    att = attach.qtest(image)
    try:
        c = NvmeController(att.bar, att.pci, att.alloc)
        # An Asynchronous Event Request completes only on an event: it is outstanding until aborted.
        cid = c.admin.submit(cmd.ADMIN_ASYNC_EVENT)
        with pytest.raises(CommandTimeout):
            c.admin.poll(cid, 0.2)
        assert c.abort(c.admin, cid) is True  # Abort DW0 bit 0 = 0: the controller aborted it
        end = c.admin.poll(cid, 5)
        assert (end.sct, end.sc) == (0, 0x07)  # "command abort requested"
        assert "abort requested" in end.describe()
        c.read(1, 0, 1, c.alloc(4096))  # the controller carries on
        c.close()
    finally:
        att.close()


def test_a_command_that_never_completes_is_aborted_then_the_controller_reset(image):
    att = attach.qtest(image)
    try:
        c = NvmeController(att.bar, att.pci, att.alloc, command_timeout=0.2)
        buf = c.alloc(4096)
        buf.write(0, b"\x5a" * 512)
        c.write(1, 7, 1, buf)
        q = c.io
        # A lost doorbell: the command sits in the SQ and the controller never sees it, so
        # neither its completion nor QEMU's Abort (it finds no such command) can end it.
        cid = q.push(cmd.NVM_READ, timeout=0.2, lba=3, data=(buf, 0, 512), nsid=1, cdw10=3)
        err = c.recover(q, cid)
        assert isinstance(err, CommandTimeout) and "the controller was reset" in str(err) and "Read" in str(err)
        assert err.lba == 3 and (c.aborts, c.resets) == (1, 1)
        assert c.regs.CSTS.RDY == 1 and not q.inflight and q.sq_tail == 0 and q.space == q.entries - 1
        buf.fill(0)
        c.read(1, 7, 1, buf)  # the recreated queues work
        assert buf.read(0, 512) == b"\x5a" * 512
        c.close()
    finally:
        att.close()


def test_a_late_command_is_aborted(image):
    # null-co takes 0.6 s per read. QEMU answers the Abort "not aborted" (DW0 bit 0 = 1) but
    # ends the read with status 07h when it finishes, inside the driver's grace period.
    att = attach.qtest(image, namespaces=["driver=null-co,size=1M,latency-ns=600000000,read-zeroes=on"])
    try:
        c = NvmeController(att.bar, att.pci, att.alloc, command_timeout=0.2)
        with pytest.raises(CommandTimeout) as exc:
            c.read(2, 5, 1, c.alloc(4096))
        assert "did not complete within 0.2 s and was aborted (command abort requested" in str(exc.value)
        assert exc.value.lba == 5 and (c.aborts, c.resets) == (1, 0) and not c.io.inflight
        c.read(1, 0, 1, c.alloc(4096))
        c.close()
    finally:
        att.close()


def test_a_throttled_command_past_its_deadline_ends_in_a_reset(image):
    # Namespace 2 is throttled to 100 bytes/s: after the first read (the burst) a 512-byte read
    # waits about 5 s, and QEMU's Abort does not end a request waiting in the throttle queue.
    att = attach.qtest(image, namespaces=["driver=null-co,size=1M,read-zeroes=on,throttling.bps-total=100"])
    try:
        c = NvmeController(att.bar, att.pci, att.alloc, command_timeout=0.2)
        buf = c.alloc(4096)
        c.read(2, 0, 1, buf)  # the burst
        with pytest.raises(CommandTimeout) as exc:
            c.run([c.rw_request(cmd.NVM_READ, 2, 1, 1, buf), c.rw_request(cmd.NVM_READ, 1, 9, 1, buf, 512)])
        assert "nor after an Abort; the controller was reset" in str(exc.value) and exc.value.lba == 1
        assert (c.aborts, c.resets) == (1, 1) and not any(q.inflight for q in c.queues)
        c.read(1, 0, 1, buf)
        c.close()
    finally:
        att.close()


@pytest.mark.timeout(30)
def test_controller_fatal_status_is_one_clear_error_and_no_hang(image):
    att = attach.qtest(image)
    c = NvmeController(att.bar, att.pci, att.alloc, command_timeout=60)  # a hang would hit the test timeout
    dev = NvmeBlockDevice(c, 1, attachment=att)
    assert dev.read(0, 1) == bytes(512)
    # Behind the driver's back: disable, then enable with a misaligned admin SQ -> QEMU sets CFS.
    att.bar.w32(0x14, 0)
    while att.bar.r32(0x1C) & 1:
        time.sleep(0.001)
    att.bar.w32(0x28, 0x1234)
    att.bar.w32(0x14, int(c.regs.CC) | 1 | 6 << 16 | 4 << 20)
    assert att.bar.r32(0x1C) & 2  # CSTS.CFS
    with pytest.raises(MediaError) as exc:
        dev.read(0, 8)
    assert "CSTS.CFS=1" in str(exc.value) and isinstance(exc.value.__cause__, ControllerError)
    with pytest.raises(MediaError) as again:
        dev.write(0, bytes(512))  # refused at once, the controller is not touched again
    assert "has failed" in str(again.value)
    with pytest.raises(MediaError):
        dev.close()  # the flush fails the same way; the controller is disabled and QEMU reaped
    assert dev.closed and att.machine._proc.poll() is not None


def test_prepared_pointers_of_a_scattered_window_are_a_prp_list(image):
    from fsproto.hw.nvme.datapointers import PreparedPointers

    att = attach.qtest(image)
    try:
        c = NvmeController(att.bar, att.pci, att.alloc)  # SGLs on (auto)
        buf = Scattered(c.alloc, 8)
        prepared = PreparedPointers(buf, 0, 8 * 4096, 4096, c.alloc, c.sgl)
        psdt, p1, p2 = prepared.pointers(5 * 4096)
        assert psdt == 0 and p1 == buf.device_addr(0) and p2 == prepared.list.device_addr(0)
        data = random.Random(2).randbytes(5 * 4096)
        buf.write(0, data[:4096 * 5] + bytes(3 * 4096))
        c.run([c.rw_request(cmd.NVM_WRITE, 1, 80, 40, pointers=(psdt, p1, p2))])
        assert image_blocks(image, 80, 40) == data
        contiguous = c.alloc(8 * 4096)
        assert PreparedPointers(contiguous, 0, 8 * 4096, 4096, c.alloc, c.sgl).pointers(4096)[0] == 1  # one SGL block
        prepared.free()
        c.close()
    finally:
        att.close()
