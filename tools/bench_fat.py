#!/usr/bin/env python3
"""Benchmark: offline copy-out of a 256 MiB tree from a FAT32 image, fsproto vs mtools' mcopy;
and offline ``ls -l`` of a directory of 10,000 files, fsproto vs mtools' mdir (and TSK's fls when
installed).

Both run in the same process tree, on the same image (warm in the page cache after one
untimed pass of each), into fresh output directories on the same filesystem, alternating run
by run; the outputs are compared file by file so the figure is for a correct copy. Prints
MiB/s for each and the ratio fsproto / mcopy (time): best against best, and the median of the
paired runs (robust when the machine is shared).

The copy-out is timed two ways: in-process through the Filesystem interface (the loop `get`
runs, one reused buffer), and as whole ``fsproto get`` commands of this tree and of the tree at
``--compare-rev``, alternating with mcopy. The listing is whole commands too (interpreter start
included: that alone is about mdir's whole run), alternating, best of ``--runs``; the 10,000-file
image is written once by fsproto (about a minute; kept with ``--keep``) and checked by fsck.vfat.

    python tools/bench_fat.py [--mib 256] [--runs 3] [--keep DIR] [--files 10000] [--compare-rev REV]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A child timing the in-process copy for another source tree (the baseline) gets it here.
_TREE_ENV = "FSPROTO_BENCH_TREE"
sys.path.insert(0, os.environ.get(_TREE_ENV) or str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent))

from fsproto.formats.fat import FORMAT  # noqa: E402
from fsproto.rawdev import ImageFile  # noqa: E402
from fsproto.vfs import Filesystem  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

CHUNK = 1 << 20


def make_tree(root: Path, total: int, seed: int = 1) -> int:
    """A mixed tree: a few large files, many small ones, nested directories; returns bytes."""
    rnd = random.Random(seed)
    # 3/8 in 16 MiB files, 5/32 in 1 MiB files (136 of 256 MiB), the rest in small ones
    sizes = [16 << 20] * (total * 3 // 8 // (16 << 20)) + [1 << 20] * (total * 5 // 32 // (1 << 20))
    left = total - sum(sizes)
    while left > 0:  # the rest in small files (4 KiB - 256 KiB), the shape of a source tree
        s = min(left, rnd.choice([4096, 10_000, 33_000, 100_000, 262_144]))
        sizes.append(s)
        left -= s
    blob = rnd.randbytes(16 << 20)
    for i, size in enumerate(sizes):
        d = root / f"dir {i % 8}" / f"sub {i % 5}"
        d.mkdir(parents=True, exist_ok=True)
        off = rnd.randrange(0, len(blob) - size + 1)
        (d / f"file number {i:05d} with a long name.bin").write_bytes(blob[off : off + size])
    return sum(sizes)


def copy_out_fsproto(fs: Filesystem, path: str, dest: Path, buf: memoryview | None = None) -> int:
    """Recursive copy-out through the Filesystem interface (what `fsproto get` does per file)."""
    buf = buf if buf is not None else memoryview(bytearray(CHUNK))
    done = 0
    dest.mkdir(exist_ok=True)
    for st in fs.listdir(path):
        p = path.rstrip("/") + "/" + st.name
        if st.is_dir:
            done += copy_out_fsproto(fs, p, dest / st.name, buf)
            continue
        with open(dest / st.name, "wb") as out:
            off = 0
            readinto = getattr(fs, "readinto", None)  # absent in trees before issue 19
            while off < st.size:  # one reused buffer, as fs_actions._stream does for `get`
                if readinto is None:
                    chunk = fs.read(p, off, min(CHUNK, st.size - off))
                    out.write(chunk)
                    off += len(chunk)
                    continue
                n = readinto(p, off, buf[: min(CHUNK, st.size - off)])
                out.write(buf[:n])
                off += n
        done += st.size
    return done


def run_fsproto(img: Path, dest: Path) -> float:
    t0 = time.perf_counter()
    with ImageFile(img) as dev, FORMAT.open(dev) as fs:
        copy_out_fsproto(fs, "/", dest)
    return time.perf_counter() - t0


def run_mcopy(img: Path, dest: Path) -> float:
    dest.mkdir()
    t0 = time.perf_counter()
    subprocess.run(["mcopy", "-s", "-n", "-i", str(img), "::*", str(dest)], check=True)
    return time.perf_counter() - t0


def make_many(img: Path, nfiles: int) -> str:
    """A FAT32 image whose /many holds *nfiles* long-named files; returns that directory."""
    if not img.exists():
        with open(img, "wb") as f:
            f.truncate(256 << 20)
        subprocess.run(["mkfs.vfat", "-F", "32", str(img)], check=True, capture_output=True)
        with ImageFile(img, writable=True) as dev, FORMAT.open(dev) as fs:
            fs.mkdir("/many")
            for i in range(nfiles):
                p = f"/many/file number {i:05d} with a long name.txt"
                fs.create(p)
                fs.write(p, 0, b"x" * (1 + i % 3000))
        subprocess.run(["fsck.vfat", "-n", str(img)], check=True, capture_output=True)
    return "/many"


def bench_ls(work: Path, nfiles: int, runs: int, rev: str | None) -> None:
    from benchutil import extract_tree, fsproto_command, normal_env, time_commands

    img = work / f"fat32-{nfiles}.img"
    d = make_many(img, nfiles)
    cmds = {"mdir": ["mdir", "-i", str(img), f"::{d}"]}
    if shutil.which("fls"):
        inode = subprocess.run(["ifind", "-n", d.strip("/"), str(img)], capture_output=True, text=True).stdout.strip()
        cmds["fls -l"] = ["fls", "-l", str(img), inode]
    if rev:
        cmds[f"fsproto @{rev}"] = fsproto_command(extract_tree(rev, work), "ls", "-l", str(img), d)
    cmds["fsproto"] = fsproto_command(ROOT, "ls", "-l", str(img), d)
    times = time_commands(cmds, runs, env=normal_env())
    best = {k: min(v) for k, v in times.items()}
    print(f"ls -l of {nfiles} files in one FAT32 directory (whole commands, bytecode cached, best of {runs})")
    for k, v in best.items():
        print(f"  {k:18} {v:7.3f} s   ratio to mdir {v / best['mdir']:6.2f}")
    if not shutil.which("fls"):
        print("  (TSK's fls is not installed: tools/setup.sh does not add sleuthkit)")


def bench_get(img: Path, work: Path, runs: int, rev: str | None) -> None:
    """Whole `fsproto get` commands (this tree, *rev*) alternating with mcopy, same image."""
    from benchutil import extract_tree, fsproto_command, normal_env

    trees = {"fsproto get": ROOT}
    if rev:
        trees[f"fsproto get @{rev}"] = extract_tree(rev, work)
    times: dict[str, list[float]] = {k: [] for k in [*trees, "mcopy"]}
    env = normal_env()
    for r in range(runs + 1):
        for name in times:
            dest = work / "out-get"
            shutil.rmtree(dest, ignore_errors=True)
            if name == "mcopy":
                t = run_mcopy(img, dest)
            else:
                cmd = fsproto_command(trees[name], "get", "-o", str(dest), str(img))
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env=env)
                t = time.perf_counter() - t0
            if r:
                times[name].append(t)
    best = {k: min(v) for k, v in times.items()}
    print(f"  whole commands, best of {runs} (get also sets times and renames each .part file):")
    for k, v in best.items():
        print(f"  {k:22} {v:7.3f} s   ratio to mcopy {v / best['mcopy']:5.2f}")


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(a / d, b / d) for d in cmp.common_dirs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="size of the tree in MiB")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each tool (best is reported)")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it")
    ap.add_argument("--files", type=int, default=10_000, help="files in the ls -l directory (0: skip)")
    ap.add_argument("--compare-rev", default="e3d0f57",
                    help="git revision also timed (default: before issue 19's work; '' to skip)")
    ap.add_argument("--copy-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.copy_child:
        print(run_fsproto(*a.copy_child))
        return 0
    work = a.keep or Path(tempfile.mkdtemp(prefix="bench-fat-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src, img = work / "src", work / "fat32.img"
        if not img.exists():
            shutil.rmtree(src, ignore_errors=True)
            src.mkdir()
            total = make_tree(src, a.mib << 20)
            with open(img, "wb") as f:
                f.truncate((a.mib + a.mib // 4 + 32) << 20)
            subprocess.run(["mkfs.vfat", "-F", "32", str(img)], check=True, capture_output=True)
            subprocess.run(["mcopy", "-s", "-i", str(img), *map(str, sorted(src.iterdir())), "::/"], check=True)
        else:
            total = sum(f.stat().st_size for f in src.rglob("*") if f.is_file())
        runners = [("fsproto", run_fsproto), ("mcopy", run_mcopy)]
        if a.compare_rev:
            from benchutil import extract_tree

            old = extract_tree(a.compare_rev, work)

            def run_old(img: Path, dest: Path) -> float:
                res = subprocess.run([sys.executable, __file__, "--copy-child", str(img), str(dest)], check=True,
                                     capture_output=True, text=True, env=dict(os.environ, **{_TREE_ENV: str(old)}))
                return float(res.stdout)

            runners.append((f"@{a.compare_rev}", run_old))
        times: dict[str, list[float]] = {name: [] for name, _ in runners}
        for run in range(a.runs + 1):  # run 0 warms the page cache and checks the copies
            for name, fn in runners:
                dest = work / f"out-{name}"
                shutil.rmtree(dest, ignore_errors=True)
                t = fn(img, dest)
                if run == 0:
                    if not same_tree(src, dest):
                        print(f"{name}: copy differs from the source tree", file=sys.stderr)
                        return 1
                else:
                    times[name].append(t)
        mib = total / (1 << 20)
        best = {k: min(v) for k, v in times.items()}
        print(f"tree: {mib:.0f} MiB in {sum(1 for _ in src.rglob('*') if _.is_file())} files, FAT32 image "
              f"{img.stat().st_size >> 20} MiB (mkfs.vfat), best of {a.runs}")
        print("  in-process copy through the Filesystem interface (the @rev tree in a child, timed inside it)")
        for name, _ in runners:
            print(f"  {name:10} {best[name]:7.3f} s  {mib / best[name]:8.1f} MiB/s   ratio to mcopy "
                  f"{best[name] / best['mcopy']:5.2f}   runs: " + " ".join(f"{t:.3f}" for t in times[name]))
        pairs = sorted(f / m for f, m in zip(times["fsproto"], times["mcopy"]))
        print(f"  ratio fsproto/mcopy time: best {best['fsproto'] / best['mcopy']:.2f}, median of paired runs "
              f"{pairs[len(pairs) // 2]:.2f} (below 1 = fsproto faster)")
        bench_get(img, work, a.runs, a.compare_rev or None)
        if a.files:
            bench_ls(work, a.files, a.runs, a.compare_rev or None)
        return 0
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
