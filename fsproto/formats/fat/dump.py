"""Human-readable decode of a FAT volume's metadata: boot sector, geometry, FSInfo, one file's chain."""

from __future__ import annotations

from fsproto.formats.fat.files import runs
from fsproto.formats.fat.fs import FatFilesystem
from fsproto.formats.fat.volume import Volume
from fsproto.rawdev import BlockDevice


def dump(dev: BlockDevice, path: str | None = None) -> str:
    """The boot sector fields and geometry; with *path*, that entry and its cluster runs.

    Raises UnknownFormat, FormatError, NotFound, DeviceError.
    """
    vol = Volume(dev)
    g = vol.geo
    lines = [f"FAT{g.fat_type} on {dev.name}"]
    for k, v in vol.boot_fields.items():
        if k.startswith("_") or k.startswith("boot_code") or k == "bpb":
            continue
        lines.append(f"  {k:16} {v!r}")
    for k, v in vol.boot_fields.get("bpb", {}).items():
        if not k.startswith("_"):
            lines.append(f"  {k:16} {v!r}")
    lines.append(f"  cluster size     {g.cluster_size} B, {g.cluster_count} clusters, data at sector {g.data_sector}")
    info = vol.read_fsinfo()
    if info is not None:
        lines.append(f"  FSInfo           free {info['FSI_Free_Count']}, next {info['FSI_Nxt_Free']}")
    if path:
        fs = FatFilesystem(vol)
        parent, e = fs._lookup(path)
        if e is not None:
            chain = fs.fat.chain(e.cluster, owner=path)
            lines.append(f"{path}: short {e.short!r} attr {e.attr:#04x} size {e.size} first cluster {e.cluster} "
                         f"slots {e.first_slot}..{e.slot}")
            for idx, first, count in runs(chain, 0, len(chain) - 1):
                lines.append(f"  clusters {first}..{first + count - 1} (file clusters {idx}..{idx + count - 1})")
    return "\n".join(lines)
