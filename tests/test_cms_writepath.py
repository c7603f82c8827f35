"""The CMS write path's in-memory shortcuts give the same disk as the plain way.

The writers keep each file's block map, record index and data-block count in memory and update
them in place, build pointer blocks from array slices, allocate runs of blocks at once and patch
ADTUSED into the label. Each shortcut is checked here against the straightforward computation
it replaces: a workload run with every cached map dropped before each operation (so every write
starts from the disk) must leave byte-identical disks; pointer blocks must equal a per-entry
reference encoding; allocate_many must return what repeated allocate() calls return. Crash
ordering is covered by test_cms_crash.py, which runs the same writers.
"""

from __future__ import annotations

import random
import struct
from array import array

import pytest

from fsproto.formats.cms import FORMAT
from fsproto.formats.cms.alloc import AllocMap
from fsproto.formats.cms.fs import CmsFilesystem
from fsproto.formats.cms.pointers import (
    Tree,
    level_counts,
    levels_for,
    pointer_block_bytes,
    ppb_for,
    v_leaf_meta,
    v_leaf_metas,
)
from fsproto.rawdev import MemoryDevice

CLOCK = lambda: 1_700_000_000.0  # noqa: E731 - deterministic FST dates


class CountingDevice(MemoryDevice):
    """A MemoryDevice that counts the blocks read and the write calls made through it."""

    blocks_read = 0
    writes = 0

    def _read(self, lba: int, count: int) -> bytes:
        self.blocks_read += count
        return super()._read(lba, count)

    def _write(self, lba: int, data) -> None:
        self.writes += 1
        super()._write(lba, data)


def _workload(fs: CmsFilesystem, rng: random.Random, *, drop_caches: bool) -> None:
    def op(fn, *args):
        if drop_caches:
            fs._maps.clear()  # every write starts from the disk, as after a fresh open
            fs._texts.clear()
        fn(*args)

    op(fs.create, "/A.V")
    op(fs.create, "/B.F")
    op(fs.setxattr, "/B.F", "user.record_format", b"F")
    op(fs.setxattr, "/B.F", "user.record_lrecl", b"100")
    for i in range(150):  # appends: levels grow past one pointer block at 512
        op(fs.write, "/A.V", i * 700, rng.randbytes(700))
    op(fs.write, "/B.F", 200_000, b"x" * 3000)  # holes before it
    for _ in range(120):
        name = rng.choice(["/A.V", "/B.F"])
        size = fs.stat(name).size
        r = rng.random()
        if r < 0.45:
            op(fs.write, name, rng.randrange(0, size + 3000), rng.randbytes(rng.choice([1, 17, 512, 4000, 70000])))
        elif r < 0.65:
            op(fs.truncate, name, rng.randrange(0, size + 5000))
        else:
            op(fs.write, name, size, rng.randbytes(rng.randrange(1, 3000)))


@pytest.mark.parametrize("bs", [512, 4096])
def test_cached_maps_write_the_same_bytes_as_fresh_reads(bs: int) -> None:
    images = []
    fresh = MemoryDevice(8192 if bs == 512 else 2048, 512 if bs == 512 else 4096)
    FORMAT.mkfs(fresh, block_size=bs, label="WP")  # once: the label holds the creation time
    for drop in (False, True):
        dev = fresh.clone()
        fs = CmsFilesystem(dev, clock=CLOCK)
        _workload(fs, random.Random(bs), drop_caches=drop)
        fs.close()
        assert FORMAT.fsck(dev).problems == []
        images.append(dev.snapshot())
    assert images[0] == images[1]


def test_append_reads_no_metadata_and_writes_new_blocks_at_once() -> None:
    """An append to a big file reads at most its last data block and the label's sector: not
    its pointer blocks, the map or the directory (they are cached while the fs is open). It
    writes 5 times: its new data and pointer blocks (adjacent: one write), the map, the
    directory block (commit), the map (frees), the label (ADTUSED)."""
    dev = CountingDevice(16384, 512)
    FORMAT.mkfs(dev, block_size=512, label="WP")
    fs = CmsFilesystem(dev, clock=CLOCK)
    fs.create("/BIG.V")
    for i in range(400):  # 400 KiB: two pointer levels at 512
        fs.write("/BIG.V", i * 1000, bytes(1000))
    assert fs.stat("/BIG.V").extra["levels"] == "2"
    for i in range(50):
        before, writes = dev.blocks_read, dev.writes
        fs.write("/BIG.V", 400_000 + i * 1000, bytes([i]) * 1000)
        assert dev.blocks_read - before <= 2
        assert dev.writes - writes == 5
    fs.close()
    assert FORMAT.fsck(dev).problems == []
    fs = CmsFilesystem(dev)
    assert fs.read("/BIG.V", 400_000 + 49 * 1000, 1000) == bytes([49]) * 1000


def _reference_pointer_block(tree: Tree, level: int, index: int, bs: int) -> bytes:
    """One entry at a time, straight from shared/specs/cms-edf.md "Pointer blocks"."""
    ppb = tree.ppb
    children = tree.leaves if level == 1 else tree.pointer_levels[level - 2]
    lo, hi = index * ppb, min(index * ppb + ppb, len(children))
    buf = bytearray(bs)
    span = ppb ** (level - 1)
    for k, c in enumerate(range(lo, hi)):
        if tree.ptr_size == 4:
            struct.pack_into(">I", buf, 4 * k, children[c])
        else:
            last = min((c + 1) * span, len(tree.leaves)) - 1
            struct.pack_into(">III", buf, 12 * k, children[c], tree.hi[last], tree.disp[c * span])
    if tree.ptr_size == 12:
        struct.pack_into(">I", buf, bs - 4, (hi - lo - 1) * 12)
    return bytes(buf)


@pytest.mark.parametrize("ptr_size", [4, 12])
def test_pointer_blocks_match_the_reference_encoding(ptr_size: int) -> None:
    rng = random.Random(ptr_size)
    for bs in (512, 1024):
        ppb = ppb_for(ptr_size, bs)
        for n in (2, ppb - 1, ppb, ppb + 1, 3 * ppb + 7, ppb * ppb, ppb * ppb + ppb + 1):
            words = lambda k: array("I", (rng.randrange(1 << 32) for _ in range(k)))  # noqa: E731
            levels = levels_for(n, ppb)
            counts = level_counts(n, levels, ppb)
            tree = Tree(ptr_size, ppb, words(n), words(n) if ptr_size == 12 else None,
                        words(n) if ptr_size == 12 else None, [words(c) for c in counts[1:]])
            for lvl in range(1, levels + 1):
                for i in range(counts[lvl]):
                    assert pointer_block_bytes(tree, lvl, i, bs) == _reference_pointer_block(tree, lvl, i, bs)


def test_allocate_many_matches_repeated_allocate() -> None:
    dev = MemoryDevice(4096, 512)
    FORMAT.mkfs(dev, block_size=512, label="WP")
    fs = CmsFilesystem(dev)
    rng = random.Random(3)
    base = fs.amap
    n = fs.vol.num_blocks
    for trial in range(60):
        bits = bytearray(base.bits)
        for _ in range(rng.randrange(0, 3000)):  # a fragmented map, some runs of empty bytes
            i = rng.randrange(n)
            bits[i >> 3] |= 0x80 >> (i & 7)
        maps = []
        for _ in range(2):
            m = AllocMap.__new__(AllocMap)
            m.vol, m.tree, m.bits, m.dirty = base.vol, base.tree, bytearray(bits), set()
            m.used = m._count()
            m._cursor = rng.randrange(n + 1) if trial % 2 else 0
            maps.append(m)
        maps[1]._cursor = maps[0]._cursor
        count = rng.choice([1, 7, 8, 9, 64, 500, maps[0].free])
        assert maps[0].allocate_many(count) == [maps[1].allocate() for _ in range(count)]
        assert (maps[0].bits, maps[0].used, maps[0].dirty, maps[0]._cursor) == \
            (maps[1].bits, maps[1].used, maps[1].dirty, maps[1]._cursor)


def test_v_leaf_metas_walk_matches_per_leaf_search() -> None:
    rng = random.Random(9)
    for bs in (512, 4096):
        for _ in range(40):
            pos, rec_pos = 0, array("Q")
            for _ in range(rng.randrange(0, 200)):
                rec_pos.append(pos)
                pos += 2 + rng.choice([1, 7, bs - 2, bs, 3 * bs, 65535])
            nrec, nblocks = len(rec_pos), -(-pos // bs)
            j0 = rng.randrange(0, nblocks + 1)
            got = list(v_leaf_metas(rec_pos, nrec, j0, nblocks, bs, pos))
            assert got == [(j, *v_leaf_meta(rec_pos, nrec, j, bs, pos)) for j in range(j0, nblocks)]
