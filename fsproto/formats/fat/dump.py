"""Decode of a FAT volume's metadata: boot sector, geometry, FSInfo, one file's chain.

:func:`dump_data` decodes; :func:`dump` prints that data (``dump`` and ``dump --json`` cannot
disagree). In the data, bytes fields are hex strings; the text shows them as Python literals.
"""

from __future__ import annotations

from typing import Any

from fsproto.formats.fat.files import runs
from fsproto.formats.fat.fs import FatFilesystem
from fsproto.formats.fat.volume import Volume
from fsproto.rawdev import BlockDevice


def _fields(vol: Volume) -> dict[str, int | bytes]:
    out: dict[str, int | bytes] = {}
    for k, v in vol.boot_fields.items():
        if not (k.startswith("_") or k.startswith("boot_code") or k == "bpb"):
            out[k] = v
    for k, v in vol.boot_fields.get("bpb", {}).items():
        if not k.startswith("_"):
            out[k] = v
    return out


def _decode(dev: BlockDevice, path: str | None) -> tuple[Volume, dict[str, Any]]:
    vol = Volume(dev)
    g = vol.geo
    data: dict[str, Any] = {"format": "fat", "fat_type": g.fat_type, "device": dev.name,
                            "geometry": {"cluster_size": g.cluster_size, "cluster_count": g.cluster_count,
                                         "data_sector": g.data_sector}}
    info = vol.read_fsinfo()
    data["fsinfo"] = None if info is None else {"free": info["FSI_Free_Count"], "next": info["FSI_Nxt_Free"]}
    if path:
        fs = FatFilesystem(vol)
        _, e = fs._lookup(path)
        if e is not None:
            chain = fs.fat.chain(e.cluster, owner=path)
            data["file"] = {"path": path, "short": e.short.hex(), "attr": e.attr, "size": e.size,
                            "first_cluster": e.cluster, "first_slot": e.first_slot, "slot": e.slot,
                            "runs": [{"first": first, "count": count, "file_cluster": idx}
                                     for idx, first, count in runs(chain, 0, len(chain) - 1)]}
    return vol, data


def dump_data(dev: BlockDevice, path: str | None = None) -> dict[str, Any]:
    """The boot sector fields and geometry; with *path*, that entry and its cluster runs.

    Raises UnknownFormat, FormatError, NotFound, DeviceError.
    """
    vol, data = _decode(dev, path)
    data["boot"] = {k: v.hex() if isinstance(v, (bytes, bytearray)) else v for k, v in _fields(vol).items()}
    return data


def dump(dev: BlockDevice, path: str | None = None) -> str:
    """The text form of :func:`dump_data`. Raises as dump_data."""
    vol, data = _decode(dev, path)
    lines = [f"FAT{data['fat_type']} on {data['device']}"]
    for k, v in _fields(vol).items():
        lines.append(f"  {k:16} {v!r}")
    g = data["geometry"]
    lines.append(f"  cluster size     {g['cluster_size']} B, {g['cluster_count']} clusters, data at sector "
                 f"{g['data_sector']}")
    if data["fsinfo"] is not None:
        lines.append(f"  FSInfo           free {data['fsinfo']['free']}, next {data['fsinfo']['next']}")
    f = data.get("file")
    if f is not None:
        lines.append(f"{f['path']}: short {bytes.fromhex(f['short'])!r} attr {f['attr']:#04x} size {f['size']} "
                     f"first cluster {f['first_cluster']} slots {f['first_slot']}..{f['slot']}")
        for r in f["runs"]:
            lines.append(f"  clusters {r['first']}..{r['first'] + r['count'] - 1} (file clusters "
                         f"{r['file_cluster']}..{r['file_cluster'] + r['count'] - 1})")
    return "\n".join(lines)
