"""The CMS volume as a tree for ``fsproto explore``: label -> directory -> file -> pointer levels
-> data blocks, each node laying its layout.py struct over its block.

The pointer tree is walked here from the raw entries, one pointer block per node as it is
opened, not through :func:`fsproto.formats.cms.pointers.read_tree`: that refuses a whole file for
one bad entry, while an explorer must show every part that can be read and mark the rest (an
entry outside 1..ADTNUM, an unreadable block). Entry counts follow the FST as
``load_filemap`` reads it (F: ``ceil(records * lrecl / blocksize)`` logical blocks; V: the
data-block count). Reference: shared/specs/cms-edf.md "Pointer blocks — the tree".
"""

from __future__ import annotations

import struct

from fsproto.formats.blockmap import BlockMap
from fsproto.formats.cms.directory import Directory, Fst
from fsproto.formats.cms.layout import FST, FST_SIZE, RECFM_V, f_pointer_block, fst_block, v_pointer_block
from fsproto.formats.cms.pointers import level_counts, ppb_for
from fsproto.formats.cms.volume import Volume
from fsproto.formats.outline import Node, grouped, guarded
from fsproto.rawdev import BlockDevice


def _leaves(fst: Fst, bs: int) -> int:
    if fst.recfm == RECFM_V:
        return fst.data_blocks if fst.records else 0
    return -(-(fst.records * fst.lrecl) // bs)


class _Tree:
    """Lazy nodes for one file's pointer tree."""

    def __init__(self, vol: Volume, name: str, fst: Fst) -> None:
        self.vol, self.name, self.fst = vol, name, fst
        self.v = fst.ptr_size == 12
        bs = vol.block_size
        self.ppb = ppb_for(12 if self.v else 4, bs)
        self.struct = v_pointer_block(bs) if self.v else f_pointer_block(bs)

    def top(self) -> list[Node]:
        fst, n = self.fst, _leaves(self.fst, self.vol.block_size)
        if n == 0:
            return [Node("(empty: no data blocks)", key=f"empty:{self.name}")]
        if not 0 <= fst.levels <= 8 or n > self.vol.num_blocks or level_counts(n, fst.levels, self.ppb)[-1] != 1:
            return [Node(f"FST: {fst.levels} level(s) cannot address {n} block(s)", role="unreadable",
                         error="the FST's levels and size disagree; see fsck")]
        if fst.levels == 0:
            return [self._child(fst.fop, 0, 0, 1)]
        return [self._child(fst.fop, fst.levels, 0, n)]

    def _child(self, b: int, level: int, first_leaf: int, nleaves: int) -> Node:
        """Block *b* at *level* (0 = data) covering leaves first_leaf .. first_leaf + nleaves - 1."""
        if b == 0:
            return Node(f"null entry: {nleaves} hole block(s) from leaf {first_leaf}",
                        key=f"hole:{self.name}:{first_leaf}")
        if not 1 <= b <= self.vol.num_blocks:
            return Node(f"pointer to block {b}: outside 1..{self.vol.num_blocks}", role="unreadable",
                        error=f"block {b} is not on this disk", key=f"bad:{self.name}:{level}:{first_leaf}")
        if level == 0:
            return Node(f"data block {b} (leaf {first_leaf})", b, role="data", key=f"data:{self.name}:{first_leaf}")
        return Node(f"level {level} pointer block {b}", b, 1, self.struct, 0, "pointer",
                    key=f"ptr:{self.name}:{level}:{first_leaf}",
                    children=guarded(lambda: self._entries(b, level, first_leaf, nleaves), f"block {b}"))

    def _entries(self, b: int, level: int, first_leaf: int, nleaves: int) -> list[Node]:
        raw = self.vol.read_block(b)
        span = self.ppb ** (level - 1)
        count = -(-nleaves // span)
        step = 12 if self.v else 4
        out = []
        for i in range(count):
            child = struct.unpack_from(">I", raw, i * step)[0]
            lo = first_leaf + i * span
            out.append(self._child(child, level - 1, lo, min(span, first_leaf + nleaves - lo)))
        return grouped(out, "entries")


def _file_node(vol: Volume, d: Directory, slot: int, fst: Fst, name: str, key: str) -> Node:
    bs = vol.block_size
    n = _leaves(fst, bs)
    label = f"{name}  {fst.recfm_char} {fst.lrecl}, {fst.records} rec, {n} block(s), {fst.levels} level(s)"
    tree = _Tree(vol, name, fst)
    return Node(label, d.block_of(slot), 1, FST, (slot * FST_SIZE) % bs, "directory", key=key,
                children=guarded(tree.top, name))


def _directory_children(vol: Volume, d: Directory) -> list[Node]:
    bs = vol.block_size
    per = d.per_block
    blocks = [Node(f"directory block {b} (slots {j * per}-{(j + 1) * per - 1})", b, 1, fst_block(bs), 0, "directory",
                   key=f"dirblock:{j}") for j, b in enumerate(d.tree.leaves)]
    out = [Node(f"directory blocks ({len(blocks)})", children=lambda: blocks, key="dirblocks"),
           _file_node(vol, d, 0, d.director, "DIRECTOR", "file:DIRECTOR"),
           _file_node(vol, d, 1, d.allocmap, "ALLOCMAP", "file:ALLOCMAP")]
    files = [_file_node(vol, d, slot, fst, fst.display_name(), f"file:{fst.display_name()}")
             for slot, fst in d.files()]
    return out + grouped(files, "files")


def outline(dev: BlockDevice, bmap: BlockMap) -> Node:
    """The tree of the CMS volume on *dev*. Raises UnknownFormat, FormatError (the label only)."""
    vol = Volume.open(dev)
    lab = vol.label
    bs = vol.block_size
    label_block = lab.offset // bs + 1
    label_struct = bmap.extent_at(label_block).struct

    def directory() -> list[Node]:
        d = Directory(vol, strict=False)
        return _directory_children(vol, d)

    def top() -> list[Node]:
        dir_node = Node(f"directory (DIRECTOR FST in block {lab.dop})", lab.dop, 1, FST, 0, "directory",
                        key="directory", children=guarded(directory, "directory"))
        return [Node(f"label (block {label_block}, byte {lab.offset})", label_block, 1, label_struct, 0, "label",
                     key="label"), dir_node]

    volser = lab.fields["ADTID"].decode("cp1047", "replace").strip()
    return Node(f"CMS {volser!r}: {vol.num_blocks} blocks of {bs} B", children=top, key="root")

