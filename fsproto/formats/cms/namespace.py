"""Directory changes in crash-safe order: FST commits, create, delete (dense), rename, growth.

Reference: shared/specs/cms-edf.md "The directory and the allocation map": a new FST takes the
first free slot; a delete moves the last FST into the freed slot and zeroes the last slot,
freeing the last directory block when it empties; a rename rewrites the FST in place.

Write order and why each intermediate state is safe (a cut may stop after any single write):

* create, slot in block 0: one write (FST + DIRECTOR count) commits.
* create, slot in another existing block: write that block (the FST lies past the record count:
  invisible), then block 0 with count+1 (commit). A cut leaves a stale FST past the count (notice).
* create, directory grows: the new directory block and new pointer blocks go to free blocks, the
  map is written, then block 0 (DIRECTOR: count, FOP, levels, data blocks) commits.
* delete slot s, last slot L: directory pointer blocks (if the directory shrinks) are written
  copy-on-write, the map is written, then (1) block(s) with the last FST copied into s (commit:
  the deleted file is gone; until (2) the last slot is an exact duplicate, which readers ignore),
  (2) block 0 with count-1 and the directory's new tree, (3) block(L) with slot L zeroed when it
  is still a directory block. Freed blocks are cleared in the map last, then ADTUSED.
* rename over an existing target: (1) the source slot takes the new name and the replace mark
  (commit: of two FSTs with one name the marked one wins), (2) the target slot is deleted as
  above, (3) the mark is cleared.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

from fsproto.errors import NoSpace
from fsproto.formats.cms.directory import Fst
from fsproto.formats.cms.files import Txn
from fsproto.formats.cms.layout import FREE_NAME, FST_SIZE, REPLACE_MARK
from fsproto.formats.cms.pointers import Tree, update_tree

if TYPE_CHECKING:
    from fsproto.formats.cms.fs import CmsFilesystem

_ZERO_FST = bytes(FST_SIZE)


class Namespace:
    """Mutations of the directory of one open filesystem."""

    def __init__(self, fs: "CmsFilesystem") -> None:
        self.fs = fs
        self.dir = fs.dir
        self.vol = fs.vol

    # -- slot bytes ------------------------------------------------------------------------
    def _put(self, slot: int, raw: bytes) -> int:
        """Update slot bytes in memory; returns the logical directory block holding it."""
        j, off = divmod(slot * FST_SIZE, self.vol.block_size)
        self.dir.blocks[j][off : off + FST_SIZE] = raw
        if slot < len(self.dir.slots):
            self.dir.slots[slot] = Fst.from_bytes(raw)
        return j

    def _write_block(self, j: int) -> None:
        self.vol.write_blocks(self.dir.tree.leaves[j], self.dir.blocks[j])

    def _touch_director(self) -> None:
        date, century = self.fs.now_date()
        d = self.dir.slots[0]
        d.data_blocks = len(self.dir.tree.leaves)  # kept exact (the reference leaves it stale)
        d.date = date
        d.flag = (d.flag | 0x08) if century else (d.flag & ~0x08)
        self._put(0, d.to_bytes())

    def _set_director_tree(self, tree: Tree, count: int) -> None:
        d = self.dir.slots[0]
        d.fop, d.levels, d.data_blocks, d.records = tree.fop, tree.levels, len(tree.leaves), count
        self._put(0, d.to_bytes())

    # -- FST commit of a data change -------------------------------------------------------------
    def commit_fst(self, slot: int, changes: dict, *, touch: bool) -> None:
        """Rewrite one FST (the commit point of a data change), then the DIRECTOR date."""
        fst = Fst.from_bytes(self.dir.slots[slot].to_bytes())
        for k, v in changes.items():
            setattr(fst, k, v)
        if touch:
            date, century = self.fs.now_date()
            fst.date = date
            fst.flag = (fst.flag | 0x08) if century else (fst.flag & ~0x08)
        j = self._put(slot, fst.to_bytes())
        if touch:
            self._touch_director()
        self._write_block(j)
        if touch and j != 0:
            self._write_block(0)

    # -- create ------------------------------------------------------------------------------------
    def create(self, fst: Fst) -> int:
        """Add *fst* at the first free slot; returns the slot. Raises NoSpace."""
        d = self.dir
        c = d.count
        if c >= 0xFFFFFFFF:
            raise NoSpace("directory is full")
        j = (c * FST_SIZE) // self.vol.block_size
        raw = fst.to_bytes()
        if j == len(d.blocks):
            self._grow(c, raw)
        else:
            d.slots.append(Fst.from_bytes(raw))
            self._put(c, raw)
            if j != 0:
                self._write_block(j)  # past the record count: invisible until block 0 says so
            d.count = c + 1
            d.slots[0].records = c + 1
            self._touch_director()
            self._write_block(0)
        d.index[fst.key] = c
        return c

    def _grow(self, c: int, raw: bytes) -> None:
        d = self.dir
        bs = self.vol.block_size
        if self.fs.amap.free < 1 + 4:
            raise NoSpace("no free block for the directory to grow", device=self.vol.name)
        txn = Txn(self.fs)
        try:
            nb = txn.alloc()
            block = bytearray(bs)
            block[:FST_SIZE] = raw
            txn.write(nb, block)
            new = Tree(4, d.tree.ppb, array("I", list(d.tree.leaves) + [nb]))
            update_tree(d.tree, new, {len(new.leaves) - 1}, bs, txn.alloc, txn.write, txn.freed)
            txn.prepare()
        except BaseException:
            txn.rollback()
            raise
        d.tree = new
        d.blocks.append(block)
        d.slots.append(Fst.from_bytes(raw))
        d.count = c + 1
        self._set_director_tree(new, c + 1)
        self._touch_director()
        self._write_block(0)  # commit
        txn.finish()

    # -- delete ------------------------------------------------------------------------------------
    def delete(self, slot: int, file_blocks: list[int]) -> None:
        """Remove the FST at *slot*, keep the directory dense, free *file_blocks* after the commit."""
        d = self.dir
        bs = self.vol.block_size
        last = d.count - 1
        key = d.slots[slot].key
        moved = d.slots[last] if slot != last else None
        txn = Txn(self.fs)
        txn.freed.extend(file_blocks)
        j_s = (slot * FST_SIZE) // bs
        j_l = (last * FST_SIZE) // bs
        shrink = (last * FST_SIZE) % bs == 0  # the last block holds only the last slot
        new_tree = d.tree
        try:
            if shrink:
                new_tree = Tree(4, d.tree.ppb, array("I", d.tree.leaves[:-1]))
                txn.freed.append(d.tree.leaves[-1])
                update_tree(d.tree, new_tree, set(), bs, txn.alloc, txn.write, txn.freed)
            txn.prepare()
        except BaseException:
            txn.rollback()
            raise
        if d.index.get(key) == slot:
            del d.index[key]
        if moved is not None:
            self._put(slot, moved.to_bytes())
            d.index[moved.key] = slot
        if not shrink or j_l == j_s:
            self._put(last, _ZERO_FST)
        if moved is not None and j_s != 0:
            self._write_block(j_s)  # commit (the moved FST is briefly also in the last slot)
        old_leaves = d.tree.leaves
        d.slots.pop()
        d.count = last
        d.tree = new_tree
        self._set_director_tree(new_tree, last)
        self._touch_director()
        if j_l == 0:
            self._put_raw_block0_slot(last)
        self.vol.write_blocks(old_leaves[0], d.blocks[0])  # count-1 (commit when nothing moved)
        if shrink:
            d.blocks.pop()
        elif j_l != 0 and not (moved is not None and j_l == j_s):
            self.vol.write_blocks(old_leaves[j_l], d.blocks[j_l])  # zero the last slot
        txn.finish()

    def _put_raw_block0_slot(self, slot: int) -> None:
        off = slot * FST_SIZE
        self.dir.blocks[0][off : off + FST_SIZE] = _ZERO_FST

    # -- rename --------------------------------------------------------------------------------------
    def rename(self, slot: int, new_key: tuple[bytes, bytes], target_blocks: list[int] | None) -> None:
        """Give the FST at *slot* the name *new_key*, replacing the file of that name if any."""
        d = self.dir
        fst = Fst.from_bytes(d.slots[slot].to_bytes())
        old_key = fst.key
        fst.fname, fst.ftype = new_key
        target = d.index.get(new_key)
        if target is None:
            j = self._put(slot, fst.to_bytes())
            self._write_block(j)
            del d.index[old_key]
            d.index[new_key] = slot
            return
        fst.reserved_60 = bytes([REPLACE_MARK]) + fst.reserved_60[1:]
        j = self._put(slot, fst.to_bytes())
        self._write_block(j)  # commit: the marked FST wins over the old target
        del d.index[old_key]
        d.index[new_key] = slot
        self.delete(target, target_blocks or [])
        now = d.index[new_key]
        f = Fst.from_bytes(d.slots[now].to_bytes())
        f.reserved_60 = b"\x00" + f.reserved_60[1:]
        self._write_block(self._put(now, f.to_bytes()))

    # -- exchange ------------------------------------------------------------------------------------
    def exchange(self, sa: int, sb: int) -> None:
        """Swap the names of the FSTs at *sa* and *sb*, which share a directory block: one write."""
        d = self.dir
        fa = Fst.from_bytes(d.slots[sa].to_bytes())
        fb = Fst.from_bytes(d.slots[sb].to_bytes())
        ka, kb = fa.key, fb.key
        (fa.fname, fa.ftype), (fb.fname, fb.ftype) = kb, ka
        j = self._put(sa, fa.to_bytes())
        assert self._put(sb, fb.to_bytes()) == j
        self._write_block(j)  # commit
        d.index[ka], d.index[kb] = sb, sa

    def free_name(self) -> bytes:
        return FREE_NAME
