#!/usr/bin/env python3
"""Deterministic builder of fsproto's sample CMS minidisks (nothing big is committed; CI runs this).

For each block size (512, 1024, 2048, 4096) ``edfBS-sample.img``: F and V text files (written
through the text view, cp1047), an F binary file, an empty file, and a V binary file large enough
for several pointer-block levels (3 at 512 and 1024, 2 at 2048 and 4096). Plus ``edf4096-dir.img``:
a directory of 10,000 small files. The same run gives byte-identical images (fixed clock, seeded
content); ``--xz`` also writes ``.img.xz`` next to each image and prints sizes and sha256.

Usage: ``python tools/make_images.py OUTDIR [--only 512,4096,dir] [--xz]``
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fsproto.formats.cms import FORMAT  # noqa: E402
from fsproto.rawdev import ImageFile  # noqa: E402

CLOCK = lambda: 1_710_504_000.0  # noqa: E731 - 2024-03-15 (UTC): FST dates are local time
MIB = 1 << 20
# (image size, V binary file size) per block size: sized for the pointer levels named above.
PLAN = {512: (4 * MIB, 1200 * 1024), 1024: (12 * MIB, 7600 * 1024), 2048: (4 * MIB, 1 * MIB),
        4096: (8 * MIB, 2 * MIB)}

TEXT = """/* PROFILE EXEC: written by fsproto's make_images */
'CP SET PF12 RETRIEVE'
say 'Hello from CMS'   [brackets] ^caret ¬not

exit 0
"""


def _bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def build_sample(out: Path, bs: int) -> Path:
    size, vsize = PLAN[bs]
    path = out / f"edf{bs}-sample.img"
    path.unlink(missing_ok=True)
    rng = random.Random(bs)
    with ImageFile.create(path, size, block_size=512) as dev:
        FORMAT.mkfs(dev, block_size=bs, label=f"SMP{bs}"[:6], clock=CLOCK)
        with FORMAT.open(dev, text=True, clock=CLOCK) as t:
            t.create("/PROFILE.EXEC")
            t.write("/PROFILE.EXEC", 0, TEXT.encode())
            t.create("/README.TEXT")
            t.setxattr("/README.TEXT", "user.record_format", b"F")
            t.setxattr("/README.TEXT", "user.record_lrecl", b"80")
            lines = "".join(f"Line {i:04} of an F 80 file, blank padded by the text view.\n" for i in range(200))
            t.write("/README.TEXT", 0, lines.encode())
        with FORMAT.open(dev, clock=CLOCK) as b:
            b.create("/FIXED.DATA")
            b.setxattr("/FIXED.DATA", "user.record_format", b"F")
            b.setxattr("/FIXED.DATA", "user.record_lrecl", b"133")
            b.setxattr("/FIXED.DATA", "user.file_mode", b"B2")
            b.write("/FIXED.DATA", 0, _bytes(rng, 133 * 300))
            b.create("/EMPTY.FILE")
            b.create("/TREE.DATA")
            off = 0
            while off < vsize:  # one record per write, random lengths up to the V maximum
                n = min(vsize - off, rng.randint(1, 65535))
                b.write("/TREE.DATA", off, _bytes(rng, n))
                off += n
            for name in ("/PROFILE.EXEC", "/README.TEXT", "/FIXED.DATA", "/EMPTY.FILE", "/TREE.DATA"):
                b.set_mtime(name, int(CLOCK()) * 10**9)
    return path


def build_dir(out: Path, nfiles: int = 10_000) -> Path:
    path = out / "edf4096-dir.img"
    path.unlink(missing_ok=True)
    with ImageFile.create(path, 64 * MIB, block_size=512) as dev:
        FORMAT.mkfs(dev, block_size=4096, label="DIR4K", clock=CLOCK)
        with FORMAT.open(dev, clock=CLOCK) as b:
            for i in range(nfiles):
                name = f"/F{i:05}.DATA"
                b.create(name)
                b.write(name, 0, f"file {i}\n".encode() * (1 + i % 7))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description="Build the sample CMS minidisks deterministically.")
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--only", default="512,1024,2048,4096,dir", help="comma list of block sizes and/or 'dir'")
    ap.add_argument("--xz", action="store_true", help="also write .img.xz files")
    args = ap.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    made = []
    for item in args.only.split(","):
        made.append(build_dir(args.outdir) if item == "dir" else build_sample(args.outdir, int(item)))
    for path in made:
        data = path.read_bytes()
        line = f"{path.name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}"
        if args.xz:
            xz = path.with_suffix(".img.xz")
            xz.write_bytes(lzma.compress(data))
            line += f", {xz.name} {xz.stat().st_size} bytes"
        report = FORMAT.fsck(ImageFile(path))
        line += ", fsck clean" if not report.problems else f", fsck: {[str(p) for p in report.problems]}"
        print(line)


if __name__ == "__main__":
    main()
