"""The CMS block map: every block's role, drawn from fsck's own walk (fsck.walk).

Roles: blocks 1-2 reserved, block 3 the label (CKD: byte 2 x blocksize), the directory's and the
allocation map's blocks, pointer blocks by level (of the directory, the map or a file), file
data; a block no walk reaches is free, or "leaked" when the map marks it; a reached block the
map leaves free is "unmarked"; the blocks of a file fsck cannot read are "leaked" (as fsck counts
them) but still named after the file when its pointer tree reads; one reached twice is "cross-linked"; one whose read fails,
"unreadable". Each extent names the construct struct its blocks hold (layout.py), so a viewer
can name the fields. Reference: shared/specs/cms-edf.md.

Limits: the walk runs on a view where unreadable device blocks read as zeros (blockmap.py), so
its findings about those blocks are what zeros there would mean; a walk that stops (a bad label is an error here; a directory or map that cannot be read
is not) leaves the blocks it never reached as "unknown".
"""

from __future__ import annotations

from typing import Any

from fsproto.errors import FormatError, FsprotoError
from fsproto.formats.blockmap import (BlockMap, UnitInfo, extents_from, mark_unreadable, readable_view,
                                     unreadable_problem, units_on)
from fsproto.formats.cms.fsck import Walk, walk
from construct import Bytes, Struct

from fsproto.formats.cms.layout import ADT, f_pointer_block, fst_block, v_pointer_block
from fsproto.formats.cms.pointers import read_tree
from fsproto.formats.cms.volume import Volume
from fsproto.rawdev import BlockDevice


def _pointer_target(num_blocks: int):
    def target(path: str, value: int) -> int | None:
        # FST fop and pointer entries (F: entries[i]; V: entries[i].next) hold block numbers.
        leaf = path.rsplit(".", 1)[-1]
        is_ptr = leaf == "fop" or leaf == "next" or (path.startswith("entries[") and "." not in path)
        return value if is_ptr and 1 <= value <= num_blocks else None

    return target


def _owners_of_unreadable_files(w: Walk) -> dict[int, str]:
    """Blocks the pointer trees of files fsck could not read still reach (fsck's walk claims a
    file's blocks only once the whole file reads), so the map can name whose leaked blocks they are."""
    if w.directory is None or w.vol is None:
        return {}
    out: dict[int, str] = {}
    vol = w.vol
    for _, fst in w.directory.files():
        if fst.fop in w.claims or fst.fop == 0:
            continue
        name = fst.display_name()
        nleaves = fst.data_blocks if fst.ptr_size == 12 else -(-(fst.records * fst.lrecl) // vol.block_size)
        try:
            tree = read_tree(vol, fst.fop, fst.levels, nleaves, fst.ptr_size, what=name, nrecords=fst.records)
        except FsprotoError:
            continue
        for b in list(tree.leaves) + tree.pointer_blocks():
            if b and b not in w.claims:
                out.setdefault(b, name)
    return out


def block_map(dev: BlockDevice) -> BlockMap:
    """The map of the CMS volume on *dev*. Raises FormatError (no usable label), DeviceError."""
    view, bad_lbas = readable_view(dev)
    w = walk(view)
    if w.vol is None:
        label_problem = w.report.problems[0]
        raise FormatError(f"no block map without a label: {label_problem.message}", device=dev.name)
    vol = w.vol
    bs, n = vol.block_size, vol.num_blocks
    label_at = vol.label.offset % bs  # CKD: 0 (block 3); FBA: byte 512 of a bigger block
    label_struct = ADT if not label_at else Struct("reserved_0" / Bytes(label_at), "ADT" / ADT)
    structs: dict[str, Any] = {"label": label_struct, "directory": fst_block(bs)}
    f_ptr, v_ptr = f_pointer_block(bs), v_pointer_block(bs)
    v_owners = {"ALLOCMAP": False, "DIRECTOR": False}
    if w.directory is not None:
        for _, fst in w.directory.files():
            v_owners[fst.display_name()] = fst.ptr_size == 12
    crossed: dict[int, str] = {}
    for b, prev, c in w.claims.cross:
        crossed[b] = f"{prev.owner or prev.who} and {c.owner or c.who}"
    first, amap = w.claims.first, w.amap
    orphaned = _owners_of_unreadable_files(w)
    reached_all = amap is not None

    def info(b: int) -> UnitInfo:
        c = first.get(b)
        if c is None:
            if not reached_all:
                return ("unknown", "", 0, None, "")
            if amap.is_used(b):
                owner = orphaned.get(b, "")
                return ("leaked", owner, 0, None, "fsck cannot read this file" if owner else "")
            return ("free", "", 0, None, "")
        if b in crossed:
            return ("cross-linked", c.owner, c.level, None, crossed[b])
        if c.role == "pointer":
            st = v_ptr if v_owners.get(c.owner) else f_ptr
        else:
            st = structs.get(c.role)
        if reached_all and not amap.is_used(b):
            return ("unmarked", c.owner, c.level, st, f"was {c.role}")
        return (c.role, c.owner, c.level, st, "")

    extents = extents_from(1, n, info)
    extents = mark_unreadable(extents, {u for u in units_on(bad_lbas, dev.block_size, bs, 1) if u <= n})
    problems = ([unreadable_problem(dev, bad_lbas)] if bad_lbas else []) + list(w.report.problems)
    return BlockMap(dev.name, "cms", "block", bs, 1, n, extents, problems=problems,
                    read_unit=Volume(dev, vol.label).read_blocks,  # the real device: bad blocks fail
                    text_codec="cp1047", pointer_target=_pointer_target(n))
