"""PRP construction (NVMe base spec 4.3) on plain Python buffers: PRP2 empty, a page, a list,
a chained list, and non-contiguous pages (host memory under uio is contiguous only per page)."""

from __future__ import annotations

import pytest

from fsproto.errors import UsageError
from fsproto.hw.backends.fake import FakeBackend
from fsproto.hw.memory import DmaBuffer
from fsproto.hw.nvme.queues import PrpBuilder
from fsproto.hw.region import Region

PAGE = 4096


class ScatteredBuffer(DmaBuffer):
    """Pages at device addresses chosen by the test (like pagemap-translated host memory)."""

    def __init__(self, pages: list[int]) -> None:
        self.size = len(pages) * PAGE
        self.pages = pages
        self.region = Region(FakeBackend(self.size))

    def device_addr(self, offset: int = 0) -> int:
        return self.pages[offset // PAGE] + offset % PAGE

    def free(self) -> None:
        pass


def list_entries(buf: ScatteredBuffer, n: int) -> list[int]:
    raw = buf.read(0, 8 * n)
    return [int.from_bytes(raw[i : i + 8], "little") for i in range(0, len(raw), 8)]


def builder(list_pages: int = 1) -> tuple[PrpBuilder, list[ScatteredBuffer]]:
    made: list[ScatteredBuffer] = []

    def alloc(size: int) -> ScatteredBuffer:
        made.append(ScatteredBuffer([0x9000_0000 + i * PAGE for i in range(size // PAGE)]))
        return made[-1]

    return PrpBuilder(alloc, PAGE, list_pages), made


def test_one_and_two_pages_need_no_list():
    prp, _ = builder()
    data = ScatteredBuffer([0x10000, 0x55000, 0x20000])
    assert prp.build(data, 512, 1024) == (0x10200, 0)
    assert prp.build(data, 512, PAGE - 512) == (0x10200, 0)
    assert prp.build(data, 512, PAGE) == (0x10200, 0x55000)  # spills into exactly one more page


def test_list_follows_scattered_pages():
    prp, made = builder()
    pages = [0x7000, 0x3000, 0x11000, 0x5000, 0x2000]
    data = ScatteredBuffer(pages)
    prp1, prp2 = prp.build(data, 8, 4 * PAGE)
    assert prp1 == 0x7008 and prp2 == made[0].device_addr(0)
    assert list_entries(made[0], 4) == pages[1:5]


def test_a_full_list_page_chains_to_the_next():
    prp, made = builder(list_pages=2)
    n = 600  # more than the 511 data entries one 4 KiB list page holds
    data = ScatteredBuffer([0x1_0000_0000 + i * 2 * PAGE for i in range(n)])
    prp1, prp2 = prp.build(data, 0, n * PAGE)
    entries = list_entries(made[0], n)  # n-1 data entries + 1 chain pointer
    assert prp1 == data.pages[0] and prp2 == made[0].device_addr(0)
    assert entries[:511] == data.pages[1:512]
    assert entries[511] == made[0].device_addr(PAGE)  # last slot of page 0 points to page 1
    assert entries[512:] == data.pages[512:]


def test_transfers_that_do_not_fit_are_refused():
    prp, _ = builder()
    data = ScatteredBuffer([i * PAGE for i in range(1, 600)])
    with pytest.raises(UsageError):
        prp.build(data, 0, 599 * PAGE)  # needs 598 list entries, one page holds 512
    with pytest.raises(UsageError):
        prp.build(data, 2, 512)  # PRP1 must be dword aligned
    with pytest.raises(UsageError):
        prp.build(data, data.size - 512, 1024)  # past the buffer


def test_identify_namespace_with_a_broken_lba_format_has_no_block_size():
    from fsproto.hw.nvme.commands import IdentifyNamespace

    raw = bytearray(4096)
    raw[0:8] = (1000).to_bytes(8, "little")
    raw[25] = 1  # two formats
    raw[26] = 1  # the second is active
    raw[128:132] = (9 << 16).to_bytes(4, "little")
    raw[132:136] = (40 << 16).to_bytes(4, "little")  # 2^40-byte blocks: nonsense
    assert IdentifyNamespace.parse(bytes(raw)).block_size == 0
    raw[26] = 0
    assert IdentifyNamespace.parse(bytes(raw)).block_size == 512
    raw[26] = 7  # an index past NLBAF
    assert IdentifyNamespace.parse(bytes(raw)).block_size == 0
