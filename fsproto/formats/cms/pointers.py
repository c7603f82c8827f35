"""Pointer-block trees: reading them (bounded) and rewriting them copy-on-write.

Reference: shared/specs/cms-edf.md "Pointer blocks — the tree". F trees hold 4-byte block
numbers (0 = null block, a hole); V trees hold 12-byte (next, hi_record, disp) entries and the
offset of the last used entry in the last 4 bytes of each pointer block. Levels follow the
reference's rule ``1 + floor(log_ppb(blocks))`` (one level more than minimal at exact powers);
readers follow the FST's ``levels`` so both shapes read.

Limits: every walk is bounded by the number of leaves the FST promises, which is checked against
ADTNUM first, and each pointer block may be visited once (a loop is a FormatError).
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass, field
from typing import Callable, Iterator

from fsproto.errors import FormatError
from fsproto.formats.cms.layout import NO_HEADER, f_pointers_per_block, v_pointers_per_block
from fsproto.formats.cms.volume import Volume


def levels_for(nblocks: int, ppb: int) -> int:
    """The reference's level count for *nblocks* data blocks: 0 for 0-1, else 1 + floor(log_ppb(n))."""
    if nblocks <= 1:
        return 0
    levels, cap = 1, ppb
    while cap <= nblocks:
        levels += 1
        cap *= ppb
    return levels


def level_counts(nblocks: int, levels: int, ppb: int) -> list[int]:
    """Blocks at each level: [leaves, level-1 pointer blocks, ..., top]."""
    counts = [nblocks]
    for _ in range(levels):
        counts.append(-(-counts[-1] // ppb))
    return counts


@dataclass
class Tree:
    """A file's block map: leaves (data blocks in order) and the pointer blocks above them."""

    ptr_size: int  # 4 (F) or 12 (V)
    ppb: int
    leaves: array  # physical block per logical block; 0 = null block (F only)
    hi: array | None = None  # V: hi_record per leaf
    disp: array | None = None  # V: disp per leaf
    pointer_levels: list[array] = field(default_factory=list)  # [level 1 blocks, ..., [top]]
    # F: leaves that are not null, kept by the writer so a commit need not recount every leaf
    # (None = count on demand). V trees have no null leaves (read_tree refuses them).
    nonnull: int | None = None

    @property
    def levels(self) -> int:
        return len(self.pointer_levels)

    @property
    def fop(self) -> int:
        if self.pointer_levels:
            return self.pointer_levels[-1][0]
        return self.leaves[0] if len(self.leaves) else 0

    def pointer_blocks(self) -> list[int]:
        return [b for lvl in self.pointer_levels for b in lvl]

    def data_block_count(self) -> int:
        if self.ptr_size == 12:
            return len(self.leaves)
        if self.nonnull is None:
            self.nonnull = len(self.leaves) - self.leaves.count(0)
        return self.nonnull

    def pointer_block_count(self) -> int:
        """Pointer blocks in the tree (null ones included), without listing them."""
        return sum(len(lvl) for lvl in self.pointer_levels)


def ppb_for(ptr_size: int, block_size: int) -> int:
    return v_pointers_per_block(block_size) if ptr_size == 12 else f_pointers_per_block(block_size)


def empty_tree(ptr_size: int, block_size: int) -> Tree:
    v = ptr_size == 12
    return Tree(ptr_size, ppb_for(ptr_size, block_size), array("I"), array("I") if v else None,
                array("I") if v else None, [])


def read_tree(vol: Volume, fop: int, levels: int, nleaves: int, ptr_size: int, *, what: str,
              nrecords: int = 0) -> Tree:
    """Walk a file's pointer tree. Raises FormatError naming the block and offset of a bad entry.

    *nleaves* is the number of logical data blocks the FST promises (checked <= ADTNUM).
    """
    bs = vol.block_size
    if ptr_size not in (4, 12):
        raise FormatError(f"{what}: pointer size {ptr_size} is not 4 or 12", device=vol.name, struct="FST")
    v = ptr_size == 12
    tree = empty_tree(ptr_size, bs)
    ppb = tree.ppb
    if nleaves > vol.num_blocks:
        raise FormatError(f"{what}: {nleaves} data blocks is more than the disk's {vol.num_blocks}",
                          device=vol.name, struct="FST")
    if nleaves == 0:
        if fop != 0:
            raise FormatError(f"{what}: empty file has FOP {fop}", device=vol.name, struct="FST")
        return tree
    vol.check_block(fop, struct_name=f"{what} FOP")
    if levels == 0:
        if nleaves != 1:
            raise FormatError(f"{what}: levels 0 but {nleaves} data blocks", device=vol.name, struct="FST")
        tree.leaves.append(fop)
        if v:
            tree.hi.append(nrecords)
            tree.disp.append(0)
        return tree
    if levels > 8:
        raise FormatError(f"{what}: {levels} pointer levels is absurd", device=vol.name, struct="FST")
    counts = level_counts(nleaves, levels, ppb)
    if counts[-1] != 1:
        raise FormatError(f"{what}: {levels} levels cannot address {nleaves} blocks", device=vol.name,
                          struct="FST")
    seen: set[int] = set()
    current = array("I", [fop])
    tree.pointer_levels = [array("I") for _ in range(levels)]
    tree.pointer_levels[levels - 1] = current
    for lvl in range(levels, 0, -1):
        child_total = counts[lvl - 1]
        children = array("I")
        his = array("I")
        disps = array("I")
        for idx, pb in enumerate(current):
            n = min(ppb, child_total - idx * ppb)
            if pb == 0:
                if v:
                    raise FormatError(f"{what}: null pointer block in a V tree", device=vol.name, struct="pointer")
                children.extend([0] * n)  # a null subtree: all holes
                continue
            if pb in seen:
                raise FormatError(f"{what}: pointer block {pb} reached twice (loop)", device=vol.name, block=pb,
                                  struct="pointer")
            seen.add(pb)
            raw = vol.read_block(pb)
            # Big-endian words into an array in one C pass (struct.unpack made n Python ints
            # and 3 tuples per block: most of a 256 MiB file's open time).
            vals = array("I")
            vals.frombytes(raw[: n * ptr_size])
            if _LITTLE:
                vals.byteswap()
            if v:
                ent = vals[0::3]
                his.extend(vals[1::3])
                disps.extend(vals[2::3])
            else:
                ent = vals
            # The checks in C (min/max over the block); the loop only finds which entry is bad.
            if ent and ((min(ent) == 0 and (v or lvl > 1)) or max(ent) > vol.num_blocks):
                for i, c in enumerate(ent):
                    if c == 0 and (v or lvl > 1):
                        if v:
                            raise FormatError(f"{what}: null entry in a V pointer block", device=vol.name,
                                              block=pb, offset=i * ptr_size, struct="pointer")
                    elif c > vol.num_blocks:
                        vol.check_block(c, struct_name=f"{what} pointer", block=pb, offset=i * ptr_size)
            children.extend(ent)
        if lvl > 1:
            tree.pointer_levels[lvl - 2] = children
        else:
            tree.leaves = children
            if v:
                tree.hi, tree.disp = his, disps
        current = children
    if not seen.isdisjoint(tree.leaves):
        b = next(b for b in tree.leaves if b in seen)
        raise FormatError(f"{what}: block {b} is both a pointer block and a data block", device=vol.name,
                          block=b, struct="pointer")
    return tree


_LITTLE = sys.byteorder == "little"
assert array("I").itemsize == 4


def _big_endian(words: array) -> bytes:
    """32-bit words as big-endian bytes (one C-level pass, not one Python call per word)."""
    if sys.byteorder == "little":
        words.byteswap()
    return words.tobytes()


def pointer_block_bytes(tree: Tree, level: int, index: int, block_size: int) -> bytes:
    """Build pointer block *index* at *level* (1 = lowest) of *tree* from its children."""
    ppb = tree.ppb
    children = tree.leaves if level == 1 else tree.pointer_levels[level - 2]
    lo = index * ppb
    hi_idx = min(lo + ppb, len(children))
    n = hi_idx - lo
    if tree.ptr_size == 4:
        return _big_endian(array("I", children[lo:hi_idx])).ljust(block_size, b"\0")
    span = ppb ** (level - 1)  # leaves under one child
    nleaves = len(tree.leaves)
    # Entry c: (child, hi_record of its last leaf, disp of its first leaf), by strided slices.
    words = array("I", bytes(4 * 3 * n))
    words[0::3] = array("I", children[lo:hi_idx])
    words[2::3] = tree.disp[lo * span : hi_idx * span : span]
    last_hi = tree.hi[(lo + 1) * span - 1 : (hi_idx - 1) * span : span]
    last_hi.append(tree.hi[min(hi_idx * span, nleaves) - 1])
    words[1::3] = last_hi
    buf = bytearray(_big_endian(words).ljust(block_size, b"\0"))
    struct.pack_into(">I", buf, block_size - 4, (n - 1) * 12)
    return bytes(buf)


def v_leaf_meta(rec_pos: array, nrec: int, j: int, block_size: int, stream_len: int) -> tuple[int, int]:
    """(hi_record, disp) of leaf *j* from the record header offsets in the stream.

    The end of the records counts as a header position: the reference sets the last block's
    disp to where the data ends when no header starts in it (checked on the shared images).
    """
    from bisect import bisect_left

    start, end = j * block_size, (j + 1) * block_size
    k = bisect_left(rec_pos, start, 0, nrec)
    if k < nrec and rec_pos[k] < end:
        disp = rec_pos[k] - start
    elif start <= stream_len < end:
        disp = stream_len - start
    else:
        disp = NO_HEADER
    hi = bisect_left(rec_pos, end, k, nrec)
    return hi, disp


def v_leaf_metas(rec_pos: array, nrec: int, j0: int, j1: int, block_size: int,
                 stream_len: int) -> Iterator[tuple[int, int, int]]:
    """(j, hi_record, disp) for leaves j0..j1-1: :func:`v_leaf_meta` in one forward walk (one
    search per block that holds a header, none for the rest)."""
    from bisect import bisect_left

    k = bisect_left(rec_pos, j0 * block_size, 0, nrec)  # first header at or after the block
    for j in range(j0, j1):
        start, end = j * block_size, (j + 1) * block_size
        if k < nrec and rec_pos[k] < end:
            disp = rec_pos[k] - start
            k = bisect_left(rec_pos, end, k, nrec)
        elif start <= stream_len < end:
            disp = stream_len - start
        else:
            disp = NO_HEADER
        yield j, k, disp


Alloc = Callable[[], int]


def update_tree(old: Tree, new: Tree, dirty_leaves: set[int], block_size: int, alloc: Alloc,
                write: Callable[[int, bytes], None], freed: list[int], *, n_old: int | None = None) -> None:
    """Give *new* (whose leaves/hi/disp are final) pointer blocks, copy-on-write against *old*.

    Pointer blocks whose content changes get fresh blocks from *alloc* and are written with
    *write*; the blocks they replace (and any no longer needed) are appended to *freed*. Only
    *old*'s pointer blocks are read: *n_old* gives its leaf count when its leaves array was
    already reused (updated in place) for *new*.
    """
    ppb = new.ppb
    n_new = len(new.leaves)
    if n_old is None:
        n_old = len(old.leaves)
    lv_new = levels_for(n_new, ppb)
    counts_new = level_counts(n_new, lv_new, ppb)
    full = lv_new != old.levels
    if full:
        freed.extend(b for b in old.pointer_blocks() if b)
        old_levels: list[array] = [array("I") for _ in range(lv_new)]
        counts_old = [0] * (lv_new + 1)
    else:
        old_levels = old.pointer_levels
        counts_old = level_counts(n_old, lv_new, ppb)
    new.pointer_levels = [array("I") for _ in range(lv_new)]
    dirty = set(dirty_leaves)
    for lvl in range(1, lv_new + 1):
        cnt_new, cnt_old = counts_new[lvl], counts_old[lvl]
        child_new, child_old = counts_new[lvl - 1], counts_old[lvl - 1]
        parents = {d // ppb for d in dirty}
        if child_new != child_old:
            for c in (child_old - 1, child_new - 1):
                if c >= 0:
                    parents.add(c // ppb)
        blocks = array("I", old_levels[lvl - 1][:cnt_new])
        if cnt_new > len(blocks):
            blocks.extend([0] * (cnt_new - len(blocks)))
            parents.update(range(cnt_old, cnt_new))
        freed.extend(b for b in old_levels[lvl - 1][cnt_new:] if b)
        new.pointer_levels[lvl - 1] = blocks
        changed = sorted(p for p in parents if p < cnt_new)
        for p in changed:
            if blocks[p]:
                freed.append(blocks[p])
            blocks[p] = alloc()
        for p in changed:
            write(blocks[p], pointer_block_bytes(new, lvl, p, block_size))
        dirty = set(changed)
