"""dump: the decoded label, every FST, and (for one file) its pointer blocks, as data and as text.

:func:`dump_data` decodes; :func:`dump` prints that data, so ``dump`` and ``dump --json``
cannot disagree. Label bytes fields are hex, ADTID text, ADTCRED a date (or a note on bad BCD).
"""

from __future__ import annotations

from typing import Any

from fsproto.errors import FormatError, NotFound
from fsproto.formats.cms.directory import Directory, ebcdic_name, parse_name
from fsproto.formats.cms.fs import load_filemap
from fsproto.formats.cms.layout import NO_HEADER
from fsproto.formats.cms.volume import Volume, decode_date
from fsproto.rawdev import BlockDevice
from fsproto.vfs import split_path


def _date(raw: bytes, century: bool) -> str:
    try:
        y, mo, d, h, mi, s = decode_date(raw, century)
        return f"{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"
    except ValueError:
        return f"(bad BCD {raw.hex()})"


def dump_data(dev: BlockDevice, path: str | None = None) -> dict[str, Any]:
    """The decode as data; a directory that cannot be read is reported as ``directory_error``.
    Raises UnknownFormat, FormatError (label; with *path*, the directory or file), NotFound, InvalidName."""
    vol = Volume.open(dev)
    f = vol.label.fields
    label: dict[str, Any] = {}
    for k, v in f.items():
        if k == "ADTID":
            v = ebcdic_name(v)
        elif k == "ADTCRED":
            v = _date(v, bool(f["ADTFLGL"] & 1))
        elif isinstance(v, bytes):
            v = v.hex()
        label[k] = v
    out: dict[str, Any] = {"format": "cms", "label_offset": vol.label.offset, "label": label}
    try:
        d = Directory(vol, strict=False)
    except FormatError as e:
        if path is not None:
            raise
        # A dump is for looking at damaged disks too: show the label and what stops the directory.
        out["directory_error"] = str(e)
        return out
    slots = []
    for i, fst in enumerate(d.slots):
        if i == 0:
            name = "(DIRECTOR)"
        elif i == 1:
            name = "(ALLOCMAP)"
        elif fst.is_free:
            name = "(free)"
        else:
            name = fst.display_name()
        slots.append({"slot": i, "name": name, "mode": fst.mode_str(), "recfm": fst.recfm_char, "lrecl": fst.lrecl,
                      "records": fst.records, "data_blocks": fst.data_blocks, "levels": fst.levels,
                      "ptr_size": fst.ptr_size, "fop": fst.fop, "date": _date(fst.date, fst.century)})
    out["directory"] = {"records": d.count, "blocks": list(d.tree.leaves), "pointer_blocks": d.tree.pointer_blocks(),
                        "slots": slots}
    if path is not None:
        _, name = split_path(path)
        slot = d.lookup(parse_name(name))
        if slot is None:
            raise NotFound(f"{path}: no such file", device=dev.name)
        fst = d.slots[slot]
        tree = load_filemap(vol, fst).tree
        file: dict[str, Any] = {"name": fst.display_name(), "fop": fst.fop, "levels": fst.levels,
                                "data_block_count": len(tree.leaves),
                                "pointer_levels": {str(lvl): list(tree.pointer_levels[lvl - 1])
                                                   for lvl in range(tree.levels, 0, -1)}}
        if tree.ptr_size == 12 and tree.hi is not None:
            file["leaves"] = [{"leaf": j, "block": b, "hi_record": tree.hi[j],
                               "disp": None if tree.disp[j] == NO_HEADER else tree.disp[j]}
                              for j, b in enumerate(tree.leaves)]
        else:
            file["data_blocks"] = list(tree.leaves)
        out["file"] = file
    return out


def dump(dev: BlockDevice, path: str | None = None) -> str:
    """Text decode of the metadata (the same data as :func:`dump_data`). Raises as dump_data."""
    data = dump_data(dev, path)
    out = [f"label at byte {data['label_offset']}:"]
    for k, v in data["label"].items():
        out.append(f"  {k:9} {v!r}" if k == "ADTID" else f"  {k:9} {v}")
    if "directory_error" in data:
        out.append(f"directory: cannot be read: {data['directory_error']}")
        return "\n".join(out) + "\n"
    d = data["directory"]
    out.append(f"directory: {d['records']} records in blocks {d['blocks']}; pointer blocks {d['pointer_blocks']}")
    out.append("  slot  name               mode recfm  lrecl  records  blocks lvl ptr      fop  date")
    for s in d["slots"]:
        out.append(f"  {s['slot']:4}  {s['name']:18} {s['mode']:4} {s['recfm']:5} {s['lrecl']:6} {s['records']:8} "
                   f"{s['data_blocks']:7} {s['levels']:3} {s['ptr_size']:3} {s['fop']:8}  {s['date']}")
    f = data.get("file")
    if f is not None:
        out.append(f"{f['name']}: FOP {f['fop']}, {f['levels']} level(s), {f['data_block_count']} data blocks")
        for lvl, blocks in f["pointer_levels"].items():
            out.append(f"  level {lvl}: pointer blocks {blocks}")
        if "leaves" in f:
            out.append("  leaf  block  hi_record  disp")
            for e in f["leaves"]:
                disp = "none" if e["disp"] is None else str(e["disp"])
                out.append(f"  {e['leaf']:4} {e['block']:6} {e['hi_record']:10}  {disp}")
        else:
            out.append(f"  data blocks: {f['data_blocks']}")
    return "\n".join(out) + "\n"
