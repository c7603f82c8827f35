"""Generators of small FAT images (healthy and corrupted) for the FAT tests; CI runs every one.

Each corruption is made with fsproto's own structures (FatTable, Directory) on an image that
fsproto formatted and filled, so every test image has a generator and no binary is checked in.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from fsproto.formats.fat import FORMAT, layout
from fsproto.formats.fat.directory import Directory
from fsproto.formats.fat.fat_table import FatTable
from fsproto.formats.fat.fs import FatFilesystem
from fsproto.formats.fat.volume import Volume
from fsproto.rawdev import MemoryDevice

SIZES = {12: 4 << 20, 16: 24 << 20, 32: 40 << 20}


def base_image(fat: int = 16) -> MemoryDevice:
    """A volume with /a.txt (3 clusters), /b.txt (2), /dir/c.txt (1) and /dir/sub/."""
    dev = MemoryDevice(SIZES[fat] // 512, name=f"fat{fat}.img")
    FORMAT.mkfs(dev, fat=fat, block_size=None if fat == 32 else 2048, label="CASES")
    with FORMAT.open(dev) as fs:
        fs.create("/a.txt")
        fs.write("/a.txt", 0, b"A" * 5000)
        fs.create("/b.txt")
        fs.write("/b.txt", 0, b"B" * 3000)
        fs.mkdir("/dir")
        fs.create("/dir/c.txt")
        fs.write("/dir/c.txt", 0, b"C" * 100)
        fs.mkdir("/dir/sub")
    return dev


def entry(dev: MemoryDevice, path: str):
    """(FatFilesystem, parent Directory, DirEntry) for *path* on *dev*."""
    fs = FatFilesystem(Volume(dev))
    parent, e = fs._lookup(path)
    return fs, parent, e


def set_fat(dev: MemoryDevice, cluster: int, value: int) -> None:
    fat = FatTable(Volume(dev))
    fat.set(cluster, value)
    fat.flush()


def first_cluster(dev: MemoryDevice, path: str) -> int:
    return entry(dev, path)[2].cluster


def chain(dev: MemoryDevice, path: str) -> list[int]:
    fs, _, e = entry(dev, path)
    return fs.fat.chain(e.cluster)


# -- corruptions: each returns the image and the cluster the damage is at ------------------------
def chain_loop(fat: int = 16) -> tuple[MemoryDevice, int]:
    """/a.txt's second cluster links back to its first (the file needs three)."""
    dev = base_image(fat)
    c = chain(dev, "/a.txt")
    set_fat(dev, c[1], c[0])
    return dev, c[1]


def chain_off_disk(fat: int = 16) -> tuple[MemoryDevice, int]:
    """/a.txt's second cluster links past the last cluster of the volume."""
    dev = base_image(fat)
    c = chain(dev, "/a.txt")
    set_fat(dev, c[1], Volume(dev).geo.max_cluster + 5)
    return dev, c[1]


def chain_into_free(fat: int = 16) -> tuple[MemoryDevice, int]:
    """/a.txt's first cluster links to a cluster the FAT marks free."""
    dev = base_image(fat)
    c = chain(dev, "/a.txt")
    fattab = FatTable(Volume(dev))
    free = next(n for n in range(2, fattab.max_cluster + 1) if fattab.is_free(n))
    set_fat(dev, c[0], free)
    return dev, free


def dir_contains_itself(fat: int = 16) -> tuple[MemoryDevice, int]:
    """/dir/sub's entry points at /dir's own cluster."""
    dev = base_image(fat)
    fs, parent, e = entry(dev, "/dir/sub")
    from dataclasses import replace

    parent.update(replace(e, cluster=parent.cluster))
    return dev, parent.cluster


def dir_chain_loop(fat: int = 16) -> tuple[MemoryDevice, int]:
    """/dir's single cluster links to itself."""
    dev = base_image(fat)
    c = first_cluster(dev, "/dir")
    set_fat(dev, c, c)
    return dev, c


def cross_link(fat: int = 16) -> tuple[MemoryDevice, int]:
    """/b.txt's second cluster is replaced by /a.txt's second cluster."""
    dev = base_image(fat)
    a, b = chain(dev, "/a.txt"), chain(dev, "/b.txt")
    set_fat(dev, b[0], a[1])
    set_fat(dev, b[1], 0)
    return dev, a[1]


def lost_clusters(fat: int = 16) -> tuple[MemoryDevice, int]:
    """Two clusters chained in the FAT but used by nothing."""
    dev = base_image(fat)
    fattab = FatTable(Volume(dev))
    got = fattab.allocate(2)
    fattab.flush()
    return dev, got[0]


def size_longer_than_chain(fat: int = 16) -> tuple[MemoryDevice, int]:
    """/b.txt says 20000 bytes but its chain holds 2 clusters of 2048."""
    dev = base_image(fat)
    _, parent, e = entry(dev, "/b.txt")
    from dataclasses import replace

    parent.update(replace(e, size=20000))
    return dev, e.cluster


def chain_longer_than_size(fat: int = 16) -> tuple[MemoryDevice, int]:
    """/a.txt says 10 bytes but its chain holds 3 clusters."""
    dev = base_image(fat)
    _, parent, e = entry(dev, "/a.txt")
    from dataclasses import replace

    parent.update(replace(e, size=10))
    return dev, e.cluster


def fat_copies_differ(fat: int = 16) -> tuple[MemoryDevice, int]:
    """One byte of the second FAT copy differs from the first."""
    dev = base_image(fat)
    vol = Volume(dev)
    g = vol.geo
    off = vol.sector_offset(g.reserved_sectors + g.fat_sectors)  # the second copy's first sector
    raw = bytearray(vol.read_bytes(off, 512))
    raw[100] ^= 0xFF
    dev.write(off // 512, raw)
    return dev, 0


def orphan_lfn(fat: int = 16) -> tuple[MemoryDevice, int]:
    """/dir/c.txt gets a long name whose 8.3 entry is then wiped (a cut mid-create)."""
    dev = base_image(fat)
    fs = FatFilesystem(Volume(dev))
    fs.create("/dir/A long orphaned name.txt")
    _, parent, e = entry(dev, "/dir/A long orphaned name.txt")
    parent.raw[e.slot * 32] = layout.DIR_FREE
    parent.write_slot(e.slot)
    return dev, parent.cluster


def bad_dotdot(fat: int = 16) -> tuple[MemoryDevice, int]:
    """/dir/sub's '..' entry points at /dir/sub itself instead of /dir."""
    dev = base_image(fat)
    c = first_cluster(dev, "/dir/sub")
    d = Directory(Volume(dev), FatTable(Volume(dev)), c)
    d.raw[32 + 26 : 32 + 28] = (c & 0xFFFF).to_bytes(2, "little")
    d.write_slot(1)
    return dev, c


CORRUPTIONS = {
    "chain-loop": chain_loop,
    "chain-off-disk": chain_off_disk,
    "chain-into-free": chain_into_free,
    "dir-contains-itself": dir_contains_itself,
    "dir-chain-loop": dir_chain_loop,
    "cross-link": cross_link,
    "lost-clusters": lost_clusters,
    "size-longer-than-chain": size_longer_than_chain,
    "chain-longer-than-size": chain_longer_than_size,
    "fat-copies-differ": fat_copies_differ,
    "orphan-lfn": orphan_lfn,
    "bad-dotdot": bad_dotdot,
}


def fsck_vfat_complaints(img: str | Path) -> list[str]:
    """What dosfstools' ``fsck.vfat -n`` says is wrong with *img* (empty: nothing; exit status 0)."""
    r = subprocess.run(["fsck.vfat", "-n", "-V", str(img)], capture_output=True, text=True)
    lines = [ln for ln in r.stdout.splitlines() if ln and not ln.startswith(("fsck.fat", str(img), "Starting "))]
    if r.returncode != 0:
        lines.append(f"exit status {r.returncode}: {r.stderr.strip()}")
    return lines
