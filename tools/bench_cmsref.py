#!/usr/bin/env python3
"""Sequential read of one large CMS file: the reference (cmsfs-fuse in the emulated s390x
guest) vs fsproto's offline read of the same image on the host, both in MB/s, one run.

The guest runs under TCG (every s390x instruction emulated), so the reference's figure is a
floor, not a fair race; the ratio says how far apart the two are *here*, nothing more.

    python tools/bench_cmsref.py [--mib 32] [--block-size 4096] [--recfm V]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fsproto.formats.cms import FORMAT  # noqa: E402
from fsproto.rawdev import ImageFile  # noqa: E402
from fsproto.testing import cmsref  # noqa: E402

CHUNK = 1 << 20


def build(image: Path, mib: int, bs: int, recfm: str) -> tuple[int, str]:
    """A disk with BIG.DATA of *mib* MiB (V: 32000-byte records; F: LRECL 1024)."""
    size = mib << 20
    with ImageFile.create(image, size + (size // 8) + (4 << 20), block_size=512) as dev:
        FORMAT.mkfs(dev, block_size=bs, label="BENCH")
        fs = FORMAT.open(dev)
        fs.create("/BIG.DATA")
        if recfm == "F":
            fs.setxattr("/BIG.DATA", "user.record_format", b"F")
            fs.setxattr("/BIG.DATA", "user.record_lrecl", b"1024")
        rng = random.Random(7)
        h = hashlib.sha256()
        step = 32000 if recfm == "V" else CHUNK
        done = 0
        while done < size:
            chunk = rng.randbytes(min(step, size - done))
            fs.write("/BIG.DATA", done, chunk)
            h.update(chunk)
            done += len(chunk)
        fs.close()
    return size, h.hexdigest()


def fsproto_read(image: Path) -> tuple[float, str]:
    with ImageFile(image, block_size=512) as dev:
        fs = FORMAT.open(dev)
        h = hashlib.sha256()
        start = time.perf_counter()
        total = fs.stat("/BIG.DATA").size
        off = 0
        while off < total:
            data = fs.read("/BIG.DATA", off, CHUNK)
            h.update(data)
            off += len(data)
        secs = time.perf_counter() - start
        fs.close()
    return secs, h.hexdigest()


def raw_read(image: Path) -> float:
    start = time.perf_counter()
    with open(image, "rb") as f:
        while f.read(CHUNK):
            pass
    return time.perf_counter() - start


GUEST = r"""
cms_mount "$DISK0" /m -o ro
read t0 _ < /proc/uptime
dd if=/m/BIG.DATA of=/dev/null bs=1048576 2> /dev/null
read t1 _ < /proc/uptime
sha256sum /m/BIG.DATA | cut -d' ' -f1 > $OUT/sha
cms_umount /m
echo "$t0 $t1" > $OUT/times
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=32, help="size of the file in MiB (default 32)")
    ap.add_argument("--block-size", type=int, default=4096, choices=(512, 1024, 2048, 4096))
    ap.add_argument("--recfm", choices=("V", "F"), default="V")
    args = ap.parse_args()
    cmsref.prepare()
    with tempfile.TemporaryDirectory(prefix="bench-cmsref-") as tmp:
        image = Path(tmp) / "bench.img"
        size, digest = build(image, args.mib, args.block_size, args.recfm)
        mb = size / 1e6
        raw_s = raw_read(image)
        fsp_s, fsp_digest = fsproto_read(image)
        result = cmsref.run([cmsref.Disk(image, read_only=True)], GUEST, timeout=1800).check()
        t0, t1 = (float(x) for x in result.files["times"].split())
        ref_s = max(t1 - t0, 0.01)
        ref_digest = result.files["sha"].decode().strip()
    ok = digest == fsp_digest == ref_digest
    print(f"file: {args.mib} MiB {args.recfm}, {args.block_size}-byte blocks; same bytes read by both: {ok}")
    print(f"host raw image read (baseline): {mb / raw_s:10.1f} MB/s")
    print(f"fsproto offline read (host):    {mb / fsp_s:10.1f} MB/s   ({fsp_s / raw_s:.1f}x the raw read's time)")
    print(f"cmsfs-fuse read in the guest:   {mb / ref_s:10.1f} MB/s   (emulated s390x under TCG: a floor)")
    print(f"ratio fsproto / reference:      {ref_s / fsp_s:10.1f}x   (not a fair race: the guest is emulated)")
    return 0 if ok else 1


if __name__ == "__main__":
    from fsproto.errors import FsprotoError

    try:
        sys.exit(main())
    except FsprotoError as e:  # one line, like every fsproto tool
        print(f"bench_cmsref: error: {e}", file=sys.stderr)
        sys.exit(8)
