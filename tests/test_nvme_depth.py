"""fsproto's NVMe driver at queue depth, against QEMU's NVMe model over qtest: many commands in
flight completing out of order (data checked in the image), phase-tag wrap on a full queue,
several I/O queues with one doorbell per queue per batch (QEMU's MMIO trace counts them), large
block-device reads issued as parallel commands.

Out-of-order completion is made certain, not hoped for: namespace 2 is QEMU's ``null-co``
driver with a 300 ms latency, so a read there is overtaken by every command to namespace 1
submitted after it.
"""

from __future__ import annotations

import random
import re
import shutil

import pytest

from fsproto.blockdev.nvme import NvmeBlockDevice
from fsproto.hw.nvme import attach
from fsproto.hw.nvme.commands import NVM_READ, NVM_WRITE
from fsproto.hw.nvme.controller import NvmeController

from qtest_dma import image_blocks, zeroed_image

pytestmark = [
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86 (tools/setup.sh)"),
    pytest.mark.timeout(120),
]

BLOCKS = 8192  # 4 MiB image of 512-byte blocks
SLOW_NS = "driver=null-co,size=1M,latency-ns=300000000,read-zeroes=on"
_MMIO = re.compile(r"pci_nvme_mmio_write addr (0x[0-9a-f]+) data (0x[0-9a-f]+) size (\d+)")


@pytest.fixture
def image(tmp_path):
    return zeroed_image(tmp_path / "nvme.img", BLOCKS)


def doorbell_writes(att, since: int = 0) -> list[tuple[int, int]]:
    """(doorbell offset, value) of every doorbell store QEMU's model saw after byte *since*."""
    with open(att.machine.trace_path) as f:
        f.seek(since)
        text = f.read()
    return [(int(m.group(1), 16), int(m.group(2), 16)) for m in _MMIO.finditer(text) if int(m.group(1), 16) >= 0x1000]


def test_many_in_flight_complete_out_of_order_with_data_checked(image):
    att = attach.qtest(image, namespaces=[SLOW_NS])
    try:
        c = NvmeController(att.bar, att.pci, att.alloc, io_queues=1)
        q = c.io
        assert sorted(c.namespaces) == [1, 2]
        rng = random.Random(16)
        lbas = rng.sample(range(0, BLOCKS - 8, 8), 40)
        data = {lba: rng.randbytes(8 * 512) for lba in lbas}
        buf = c.alloc(41 * 4096)
        for i, lba in enumerate(lbas):
            buf.write((i + 1) * 4096, data[lba])
        slow = c.rw_request(NVM_READ, 2, 0, 8, buf, 0)
        writes = [c.rw_request(NVM_WRITE, 1, lba, 8, buf, (i + 1) * 4096) for i, lba in enumerate(lbas)]
        c.run([slow, *writes])  # 41 commands, all in flight at once on one queue
        assert q.peak == 41 and q.sq_doorbells == 1 + 0  # one tail doorbell for the whole batch
        assert q.out_of_order >= 40  # every write overtook the slow read submitted first
        assert all(r.completion is not None and r.completion.ok for r in [slow, *writes])
        for lba in lbas:
            assert image_blocks(image, lba, 8) == data[lba]  # QEMU wrote each to the backing file
        # Read them back in one batch into fresh places, again behind a slow command.
        back = c.alloc(41 * 4096)
        reads = [c.rw_request(NVM_READ, 1, lba, 8, back, (i + 1) * 4096) for i, lba in enumerate(lbas)]
        before = q.out_of_order
        c.run([c.rw_request(NVM_READ, 2, 8, 8, back, 0), *reads])
        assert q.out_of_order - before >= 40
        for i, lba in enumerate(lbas):
            assert back.read((i + 1) * 4096, 8 * 512) == data[lba]
        c.close()
    finally:
        att.close()


def test_phase_wraps_on_a_full_queue(image):
    att = attach.qtest(image)
    try:
        c = NvmeController(att.bar, att.pci, att.alloc, io_queues=1, io_entries=8)
        q = c.io
        buf = c.alloc(7 * 4096)
        for rnd in range(9):  # 9 rounds of 7 (a full 8-entry ring) each: the phase flips 7 times
            chunks = [bytes([rnd * 7 + i]) * 512 for i in range(7)]
            for i, chunk in enumerate(chunks):
                buf.write(i * 4096, chunk)
            c.run([c.rw_request(NVM_WRITE, 1, rnd * 7 + i, 1, buf, i * 4096) for i in range(7)])
            assert q.space == 7 and not q.inflight
        assert q.peak == 7 and q.commands == 63
        assert q.phase == (63 // 8 + 1) % 2 and q.cq_head == 63 % 8
        expected = b"".join(bytes([n]) * 512 for n in range(63))
        assert image_blocks(image, 0, 63) == expected
        # More commands than the queue holds: the runner waits for room and finishes them all.
        back = c.alloc(63 * 512)
        c.run([c.rw_request(NVM_READ, 1, n, 1, back, n * 512) for n in range(63)])
        assert back.read(0, 63 * 512) == expected and q.commands == 126
        c.close()
    finally:
        att.close()


def test_large_reads_are_parallel_commands_over_several_queues(image):
    att = attach.qtest(image, trace=["pci_nvme_mmio_write"])
    try:
        c = NvmeController(att.bar, att.pci, att.alloc, io_queues=4)
        assert [q.qid for q in c.queues] == [1, 2, 3, 4]  # QEMU grants 64 pairs; 4 were asked for
        dev = NvmeBlockDevice(c, 1)
        data = random.Random(3).randbytes(4 << 20)  # 4 MiB: 32 commands of 128 KiB
        dev.write(0, data)
        assert image_blocks(image, 0, BLOCKS) == data
        seen = set()
        for wave in range(4):  # 2 MiB each: 16 commands in flight on the next queue round robin
            before = {q.qid: (q.commands, q.cq_doorbells) for q in c.queues}
            with open(att.machine.trace_path) as f:
                mark = len(f.read())
            assert dev.read(wave * 4096 % BLOCKS, 4096) == data[wave * 4096 % BLOCKS * 512 :][: 2 << 20]
            used = [q for q in c.queues if q.commands > before[q.qid][0]]
            assert len(used) == 1 and used[0].commands - before[used[0].qid][0] == 16
            bells = doorbell_writes(att, mark)
            sq_bells = [(off, v) for off, v in bells if (off - 0x1000) // 4 % 2 == 0]
            assert sq_bells == [(0x1000 + 8 * used[0].qid, used[0].sq_tail)]  # one SQ doorbell for the 16
            assert len(bells) - 1 == used[0].cq_doorbells - before[used[0].qid][1] <= 16
            seen.add(used[0].qid)
            assert used[0].peak >= 16
        assert seen == {1, 2, 3, 4}  # successive requests went round robin over the four queues
        dev.close()
    finally:
        att.close()


def test_msix_interrupts_are_delivered_per_queue_and_counted(image):
    from fsproto.hw.interrupts import wait_irq

    att = attach.qtest(image, trace=["pci_nvme_irq_msix"])
    try:
        irqs = att.interrupts(2)  # MSI-X table entries 1 and 2 aimed at guest RAM words
        c = NvmeController(att.bar, att.pci, att.alloc, io_queues=4, interrupts=irqs)
        assert len(c.queues) == 2  # one queue per interrupt waiter
        assert wait_irq(irqs, timeout=0.05) == 0  # nothing in flight: no message
        dev = NvmeBlockDevice(c, 1)
        data = random.Random(8).randbytes(1 << 20)
        dev.write(0, data)
        assert dev.read(0, 2048) == data == image_blocks(image, 0, 2048)
        # Both vectors fired: each message is in its RAM word (or a wait already consumed it).
        assert all(i.consume() or i.count for i in irqs), [str(i) for i in irqs]
        with open(att.machine.trace_path) as f:
            vectors = {int(v) for v in re.findall(r"pci_nvme_irq_msix raising MSI-X IRQ vector (\d+)", f.read())}
        # CQ q was created with IEN=1, IV=q; vector 0 is the admin CQ's (always enabled, 3.1.2),
        # whose completions the driver polls.
        assert vectors == {0, 1, 2}
        q = c.queues[1]  # the REPL word sees a completion's interrupt before anything reaps it
        cid = q.submit(NVM_READ, nsid=1, data=(dev._bounce, 0, 512), cdw12=0)
        before = irqs[1].count
        assert wait_irq(irqs[1], timeout=5) == 1 and irqs[1].count == before + 1
        assert q.poll(cid, 5).ok
        dev.close()
    finally:
        att.close()
