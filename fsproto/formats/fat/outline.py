"""The FAT volume as a tree for ``fsproto explore``: boot sector -> FATs -> directories ->
entries -> cluster chains, each node laying its layout.py struct over its sectors.

Chains are followed here entry by entry (bounded by the cluster count) rather than through
``FatTable.chain``, which refuses a whole chain for one bad link: the explorer shows the clusters
up to the fault and marks the fault itself. References: fatgen103 sections 3-7.
"""

from __future__ import annotations

from construct import Array, Struct

from fsproto.formats.blockmap import BlockMap
from fsproto.formats.fat import layout
from fsproto.formats.fat.directory import DirEntry, parse_entries
from fsproto.formats.fat.fat_table import FatTable
from fsproto.formats.fat.volume import Volume
from fsproto.formats.outline import Node, grouped, guarded
from fsproto.rawdev import BlockDevice

_MAX_DEPTH = 64


class _Fat:
    def __init__(self, dev: BlockDevice) -> None:
        self.vol = Volume(dev)
        self.g = self.vol.geo
        self.fat = FatTable(self.vol)

    def first_sector(self, cluster: int) -> int:
        return self.g.data_sector + (cluster - 2) * self.g.sectors_per_cluster

    def chain(self, start: int) -> tuple[list[int], str]:
        """Clusters from *start* up to the first fault, and the fault ("" for a clean end)."""
        fat, out, seen = self.fat, [], set()
        c = start
        while True:
            if not 2 <= c <= fat.max_cluster:
                return out, f"cluster {c} is outside 2..{fat.max_cluster}"
            if c in seen:
                return out, f"the chain loops back to cluster {c}"
            seen.add(c)
            out.append(c)
            nxt = fat.get(c)
            if fat.is_eoc(nxt):
                return out, ""
            if nxt == 0 or nxt == fat.bad:
                return out, f"cluster {c} links to a {'free' if nxt == 0 else 'bad'} cluster"
            c = nxt

    def cluster_nodes(self, start: int, path: str) -> list[Node]:
        clusters, fault = self.chain(start)
        spc = self.g.sectors_per_cluster
        out = [Node(f"cluster {c} (sectors {self.first_sector(c)}-{self.first_sector(c) + spc - 1})",
                    self.first_sector(c), spc, role="data", key=f"cluster:{path}:{i}")
               for i, c in enumerate(clusters)]
        out = grouped(out, "clusters")
        if fault:
            out.append(Node(f"chain breaks: {fault}", role="unreadable", error=fault, key=f"fault:{path}"))
        return out

    def directory(self, cluster: int, path: str, depth: int) -> list[Node]:
        """Entries of the directory at *cluster* (0: the fixed FAT12/16 root)."""
        g, ss = self.g, self.g.sector_size
        if cluster == 0:
            sectors = list(range(g.root_dir_sector, g.data_sector))
        else:
            clusters, _ = self.chain(cluster)
            sectors = [self.first_sector(c) + k for c in clusters for k in range(g.sectors_per_cluster)]
        raw = b"".join(self.vol.read_bytes(s * ss, ss) for s in sectors)
        out = []
        for e in parse_entries(raw):
            if e.name in (".", ".."):
                continue
            out.append(self.entry_node(e, sectors, f"{path.rstrip('/')}/{e.name}", depth))
        return grouped(out, "entries")

    def entry_node(self, e: DirEntry, sectors: list[int], path: str, depth: int) -> Node:
        ss = self.g.sector_size
        pos = e.slot * layout.DIR_ENTRY_SIZE
        sector, off = sectors[pos // ss], pos % ss
        kind = "dir" if e.is_dir else "file"
        label = f"{e.name}{'/' if e.is_dir else ''}  {'' if e.is_dir else f'{e.size} B, '}cluster {e.cluster}"

        def children() -> list[Node]:
            if not e.cluster:
                return [Node("(no clusters)")]
            chain = Node(f"cluster chain from {e.cluster}", self.first_sector(e.cluster) if 2 <= e.cluster
                         <= self.g.max_cluster else None, role="data", key=f"chain:{path}",
                         children=guarded(lambda: self.cluster_nodes(e.cluster, path), path))
            if not e.is_dir or depth >= _MAX_DEPTH:
                return [chain]
            return [chain] + self.directory(e.cluster, path, depth + 1)

        return Node(label, sector, 1, layout.DIR_ENTRY, off, "directory", key=f"{kind}:{path}",
                    children=guarded(children, path))


def outline(dev: BlockDevice, bmap: BlockMap) -> Node:
    """The tree of the FAT volume on *dev*. Raises UnknownFormat, FormatError (boot sector), DeviceError."""
    f = _Fat(dev)
    g, ss = f.g, f.g.sector_size
    boot = layout.BOOT_SECTOR_FAT32 if g.fat_type == 32 else layout.BOOT_SECTOR_FAT16
    dir_sector = Struct("entries" / Array(ss // layout.DIR_ENTRY_SIZE, layout.DIR_ENTRY))

    def top() -> list[Node]:
        out = [Node("boot sector (sector 0)", 0, 1, boot, 0, "label", key="boot")]
        if g.fsinfo_sector:
            out.append(Node(f"FSInfo (sector {g.fsinfo_sector})", g.fsinfo_sector, 1, layout.FSINFO, 0, "reserved",
                            key="fsinfo"))
        for k in range(g.num_fats):
            s = g.reserved_sectors + k * g.fat_sectors
            sectors = [Node(f"sector {s + i}", s + i, role="allocmap", key=f"fat:{k}:{i}")
                       for i in range(g.fat_sectors)]
            out.append(Node(f"FAT {k + 1} (sectors {s}-{s + g.fat_sectors - 1})", s, 1, role="allocmap",
                            key=f"fat:{k}", children=lambda sectors=sectors: grouped(sectors, "sectors (index)")))
        root_start = g.root_dir_sector if g.fat_type != 32 else f.first_sector(g.root_cluster)
        out.append(Node("root directory /", root_start, 1, dir_sector, 0, "directory", key="dir:/",
                        children=guarded(lambda: f.directory(0 if g.fat_type != 32 else g.root_cluster, "/", 0), "/")))
        return out

    label = f.vol.boot_fields.get("BS_VolLab", b"").decode("latin-1", "replace").strip()
    return Node(f"FAT{g.fat_type} {label!r}: {g.cluster_count} clusters of {g.cluster_size} B", children=top,
                key="root")
