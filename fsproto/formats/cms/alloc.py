"""The allocation map: a bitmap file (F, LRECL = blocksize), bit i (MSB first) = block i + 1.

Reference: shared/specs/cms-edf.md "The directory and the allocation map". Blocks 1-3, the
directory's blocks, the map's own blocks and every pointer block are marked. The label's
ADTAMNB/ADTAMND/ADTAMUP hints are never trusted; we search the bitmap first-fit.

Crash rule used by the writers: bits are *set* (and the map blocks written) before the FST that
makes the blocks reachable, and *cleared* only after it, so a cut can only leak blocks.
"""

from __future__ import annotations

import re

from fsproto.errors import FormatError, NoSpace
from fsproto.formats.cms.pointers import Tree, read_tree
from fsproto.formats.cms.volume import Volume

_NOT_FULL = re.compile(b"[^\xff]")
_EMPTY_RUN = re.compile(b"\x00+")
_POPCOUNT = bytes(bin(i).count("1") for i in range(256))


class AllocMap:
    """The bitmap in memory, with the set of map blocks changed since the last :meth:`write_dirty`."""

    def __init__(self, vol: Volume, tree: Tree, records: int) -> None:
        self.vol = vol
        self.tree = tree
        bs = vol.block_size
        need = -(-vol.num_blocks // (8 * bs))
        if records < need or len(tree.leaves) < need:
            raise FormatError(f"allocation map has {records} blocks; {vol.num_blocks} blocks need {need}",
                              device=vol.name, struct="ALLOCMAP FST")
        raw = b"".join(vol.read_block(b) if b else bytes(bs) for b in tree.leaves)
        self.bits = bytearray(raw)
        # Bits past ADTNUM do not name blocks; count only real ones.
        self.used = self._count()
        self.dirty: set[int] = set()
        self._cursor = 0

    @classmethod
    def load(cls, vol: Volume, fop: int, levels: int, records: int) -> "AllocMap":
        tree = read_tree(vol, fop, levels, records, 4, what="ALLOCMAP")
        return cls(vol, tree, records)

    def _count(self) -> int:
        n = self.vol.num_blocks
        full, rest = divmod(n, 8)
        c = sum(self.bits[:full].translate(_POPCOUNT)) if full else 0
        if rest:
            c += bin(self.bits[full] >> (8 - rest)).count("1")
        return c

    def is_used(self, block: int) -> bool:
        i = block - 1
        return bool(self.bits[i >> 3] & (0x80 >> (i & 7)))

    def _set(self, block: int, on: bool) -> None:
        i = block - 1
        mask = 0x80 >> (i & 7)
        byte = self.bits[i >> 3]
        if bool(byte & mask) == on:
            return
        self.bits[i >> 3] = byte | mask if on else byte & ~mask
        self.used += 1 if on else -1
        self.dirty.add((i >> 3) // self.vol.block_size)

    def mark(self, block: int) -> None:
        self._set(block, True)

    def clear(self, block: int) -> None:
        self._set(block, False)

    @property
    def free(self) -> int:
        return self.vol.num_blocks - self.used

    def allocate(self) -> int:
        """First free block at or after the cursor, then from the start. Raises NoSpace."""
        n = self.vol.num_blocks
        for lo in (self._cursor, 0):
            pos = lo >> 3
            while True:
                m = _NOT_FULL.search(self.bits, pos)
                if m is None:
                    break
                bi = m.start()
                b = self.bits[bi]
                idx = -1
                for bit in range(8):
                    k = bi * 8 + bit
                    if k >= lo and not b & (0x80 >> bit):
                        idx = k
                        break
                if idx < 0:
                    pos = bi + 1
                    continue
                if idx >= n:
                    break
                self._set(idx + 1, True)
                self._cursor = idx + 1
                return idx + 1
        raise NoSpace(f"no free block left ({n} blocks, all in use)", device=self.vol.name)

    def allocate_many(self, count: int) -> list[int]:
        """The blocks *count* calls of :meth:`allocate` would return, found a byte at a time
        where the map is empty (a big write allocates thousands). Raises NoSpace.
        """
        if count > self.free:
            return [self.allocate() for _ in range(count)]  # fails where allocate() would
        out: list[int] = []
        bits = self.bits
        start = self._cursor
        # allocate() scans from the cursor to the end, then wraps to the start; no bit is freed
        # in between, so the result is the free bits of [cursor, n) then those of [0, cursor).
        for lo, hi in ((start, self.vol.num_blocks), (0, start)):
            i = lo
            while i < hi and len(out) < count:
                byte = bits[i >> 3]
                if byte == 0xFF:
                    m = _NOT_FULL.search(bits, (i >> 3) + 1)
                    if m is None:
                        break
                    i = m.start() << 3
                elif byte == 0 and not i & 7:
                    run = (_EMPTY_RUN.match(bits, i >> 3).end() << 3) - i
                    take = min(run, hi - i, count - len(out))
                    out.extend(range(i, i + take))
                    i += take
                else:
                    if not byte & (0x80 >> (i & 7)):
                        out.append(i)
                    i += 1
        for idx in out:
            self._set(idx + 1, True)
        self._cursor = out[-1] + 1 if out else self._cursor
        return [idx + 1 for idx in out]

    def reset_cursor(self) -> None:
        self._cursor = 0

    def write_dirty(self) -> None:
        """Write every changed map block in place (one device write per map block)."""
        bs = self.vol.block_size
        for j in sorted(self.dirty):
            b = self.tree.leaves[j]
            if b:
                self.vol.write_blocks(b, self.bits[j * bs : (j + 1) * bs])
        self.dirty.clear()
