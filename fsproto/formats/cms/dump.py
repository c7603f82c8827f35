"""dump: the decoded label, every FST, and (for one file) its pointer blocks, as text."""

from __future__ import annotations

from fsproto.formats.cms.directory import Directory, ebcdic_name, parse_name
from fsproto.formats.cms.fs import load_filemap
from fsproto.formats.cms.layout import NO_HEADER
from fsproto.formats.cms.volume import Volume, decode_date
from fsproto.errors import FormatError, NotFound
from fsproto.rawdev import BlockDevice
from fsproto.vfs import split_path


def _date(raw: bytes, century: bool) -> str:
    try:
        y, mo, d, h, mi, s = decode_date(raw, century)
        return f"{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"
    except ValueError:
        return f"(bad BCD {raw.hex()})"


def dump(dev: BlockDevice, path: str | None = None) -> str:
    """Text decode of the metadata; a directory that cannot be read is reported in the text.
    Raises UnknownFormat, FormatError (label; with *path*, the directory or file), NotFound, InvalidName."""
    vol = Volume.open(dev)
    f = vol.label.fields
    out = [f"label at byte {vol.label.offset}:"]
    for k, v in f.items():
        if k == "ADTID":
            v = f"{ebcdic_name(v)!r}"
        elif k == "ADTCRED":
            v = _date(v, bool(f["ADTFLGL"] & 1))
        elif isinstance(v, bytes):
            v = v.hex()
        out.append(f"  {k:9} {v}")
    try:
        d = Directory(vol, strict=False)
    except FormatError as e:
        if path is not None:
            raise
        # A dump is for looking at damaged disks too: show the label and what stops the directory.
        out.append(f"directory: cannot be read: {e}")
        return "\n".join(out) + "\n"
    out.append(f"directory: {d.count} records in blocks {list(d.tree.leaves)}; pointer blocks "
               f"{d.tree.pointer_blocks()}")
    out.append("  slot  name               mode recfm  lrecl  records  blocks lvl ptr      fop  date")
    for i, fst in enumerate(d.slots):
        if i == 0:
            name = "(DIRECTOR)"
        elif i == 1:
            name = "(ALLOCMAP)"
        elif fst.is_free:
            name = "(free)"
        else:
            name = fst.display_name()
        out.append(f"  {i:4}  {name:18} {fst.mode_str():4} {fst.recfm_char:5} {fst.lrecl:6} {fst.records:8} "
                   f"{fst.data_blocks:7} {fst.levels:3} {fst.ptr_size:3} {fst.fop:8}  {_date(fst.date, fst.century)}")
    if path is not None:
        _, name = split_path(path)
        key = parse_name(name)
        slot = d.lookup(key)
        if slot is None:
            raise NotFound(f"{path}: no such file", device=dev.name)
        fst = d.slots[slot]
        fm = load_filemap(vol, fst)
        tree = fm.tree
        out.append(f"{fst.display_name()}: FOP {fst.fop}, {fst.levels} level(s), {len(tree.leaves)} data blocks")
        for lvl in range(tree.levels, 0, -1):
            blocks = tree.pointer_levels[lvl - 1]
            out.append(f"  level {lvl}: pointer blocks {list(blocks)}")
        if tree.ptr_size == 12 and tree.hi is not None:
            out.append("  leaf  block  hi_record  disp")
            for j, b in enumerate(tree.leaves):
                disp = "none" if tree.disp[j] == NO_HEADER else str(tree.disp[j])
                out.append(f"  {j:4} {b:6} {tree.hi[j]:10}  {disp}")
        else:
            out.append(f"  data blocks: {list(tree.leaves)}")
    return "\n".join(out) + "\n"
