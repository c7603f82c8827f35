#!/usr/bin/env python3
"""Benchmark the FUSE mount: sequential I/O through the mount vs the same bytes on an image file
(measured in the same run), small-I/O and metadata speed, and the effect of each tuning knob.

    python tools/bench_fuse.py [--backend memfs|cms] [--size-mib 256] [--files 10000]

For each configuration (a set of ``-o`` mount options) it mounts, then:

* ``write``: writes SIZE MiB sequentially in 1 MiB calls (fsync at the end);
* ``read cold``: drops the file's cached pages (fadvise DONTNEED) and reads it in 1 MiB
  calls, so every byte comes from the daemon;
* ``read warm``: reads again (page cache, kept across opens with keep_cache);
* ``4k write`` / ``4k read``: 16 MiB in 4 KiB calls (where attribute timeouts matter);
* ``ls -l``: of a directory of FILES files, first (cold) and second run.

The baseline is the same I/O on a regular file in the same directory as the image, on the
machine's disk filesystem (and ``ls -l`` of FILES files there). Ratios are mount / baseline. Results print as a table; nothing is
asserted (speed goals belong here, not in tests).

``--baseline-rev REV`` also mounts the same image with the fsproto of git revision REV
(extracted with ``git archive``) before each configuration, and prints this tree's figures as
ratios to it: before/after figures from one run on the same machine state.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fuse_helpers import force_unmount, wait_for_mount  # noqa: E402

CHUNK = 1 << 20
SMALL = 4096
SMALL_TOTAL = 16 << 20

CONFIGS: dict[str, list[str]] = {
    "defaults": [],
    "timeouts 0": ["-o", "attr_timeout=0,entry_timeout=0"],
    "no keep_cache": ["-o", "no_keep_cache"],
    "read_ahead_kb=1024": ["-o", "read_ahead_kb=1024"],
    "direct_io": ["-o", "direct_io"],
    "writeback_cache": ["-o", "writeback_cache"],
}


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def write_file(path: Path, size: int, chunk: int) -> None:
    block = os.urandom(chunk)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(size // chunk):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_file(path: Path, chunk: int) -> int:
    total = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while data := os.read(fd, chunk):
            total += len(data)
    finally:
        os.close(fd)
    return total


def io_figures(directory: Path, size: int, repeat: int) -> dict[str, float]:
    """MB/s of each I/O pattern on a file in *directory*: the best of *repeat* runs, because
    the machine is shared and one run is noisy."""
    best: dict[str, float] = {}

    def keep(key: str, mb_per_s: float) -> None:
        best[key] = max(best.get(key, 0.0), mb_per_s)

    f = directory / "BENCH.DATA"
    s = directory / "SMALL.DATA"
    mb = size / 1e6
    for _ in range(repeat):
        keep("write", mb / timed(lambda: write_file(f, size, CHUNK)))
        drop_cache(f)
        keep("read cold", mb / timed(lambda: read_file(f, CHUNK)))
        keep("read warm", mb / timed(lambda: read_file(f, CHUNK)))
        keep("4k write", SMALL_TOTAL / 1e6 / timed(lambda: write_file(s, SMALL_TOTAL, SMALL)))
        drop_cache(s)
        keep("4k read", SMALL_TOTAL / 1e6 / timed(lambda: read_file(s, SMALL)))
    f.unlink()
    s.unlink()
    return best


def ls_seconds(directory: Path) -> tuple[float, float]:
    def ls() -> None:
        subprocess.run(["ls", "-l", str(directory)], stdout=subprocess.DEVNULL, check=True)

    return timed(ls), timed(ls)


class Mount:
    """A mount of the chosen backend in a child process."""

    def __init__(self, backend: str, work: Path, opts: list[str], populate: int, image: Path | None,
                 tree: Path = ROOT) -> None:
        self.mp = work / "mnt"
        self.mp.mkdir(exist_ok=True)
        log = work / "mount.log"
        if backend == "memfs":
            cmd = [sys.executable, str(ROOT / "tests" / "fuse_helpers.py"), "memfs", str(self.mp), str(log),
                   "--capacity", str(2 << 30), "--populate", str(populate), *opts]
        else:
            cmd = [sys.executable, "-m", "fsproto", "mount", "--foreground", "--log", str(log), *opts, str(image), str(self.mp)]
        # PYTHONPATH first: a baseline tree's fsproto wins over the installed (this) one.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(cmd, cwd=tree if backend == "cms" else ROOT, stderr=subprocess.PIPE, env=env)
        wait_for_mount(self.mp, self.proc, timeout=300)

    def close(self) -> None:
        force_unmount(self.mp)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cms_image(work: Path, size: int, files: int) -> Path:
    """A CMS minidisk with room for the big file and *files* small ones already on it."""
    from fsproto.formats.cms import FORMAT
    from fsproto.rawdev import ImageFile

    path = work / "cms.img"
    with ImageFile.create(path, size * 2 + (files * 8192) + (64 << 20), block_size=4096) as dev:
        FORMAT.mkfs(dev, block_size=4096, label="BENCH")
        fs = FORMAT.open(dev)
        for i in range(files):
            name = f"/F{i:07d}.DATA"
            fs.create(name)
            fs.write(name, 0, b"%d\n" % i)
        fs.close()
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["memfs", "cms"], default="memfs")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of: " + ", ".join(CONFIGS))
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is kept")
    ap.add_argument("--workdir", type=Path, default=None, help="where the image and the baseline file go")
    ap.add_argument("--baseline-rev", default=None,
                    help="also mount with the fsproto of this git revision and print ratios to it (cms backend)")
    a = ap.parse_args()
    size = a.size_mib << 20
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        work = Path(tmp)
        base_dir = work / "baseline"
        base_dir.mkdir()
        base = io_figures(base_dir, size, a.repeat)
        many = work / "many"
        many.mkdir()
        for i in range(a.files):
            (many / f"F{i:07d}.DATA").write_bytes(b"%d\n" % i)
        base_ls = ls_seconds(many)
        image = cms_image(work, size, a.files) if a.backend == "cms" else None
        print(f"backend {a.backend}, {a.size_mib} MiB file, {a.files} files; MB/s (ratio to the image-file baseline)")
        cols = ["write", "read cold", "read warm", "4k write", "4k read"]
        print(f"{'config':<20}" + "".join(f"{c:>18}" for c in cols) + f"{'ls -l cold':>12}{'ls -l warm':>12}")
        print(f"{'image file':<20}" + "".join(f"{base[c]:>10.0f}        " for c in cols)
              + f"{base_ls[0]:>11.2f}s{base_ls[1]:>11.2f}s")
        old_tree = None
        if a.baseline_rev:
            old_tree = work / "baseline-tree"
            old_tree.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", a.baseline_rev, "fsproto"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
        for name in a.configs.split(","):
            figs = {}
            for label, tree in ([(a.baseline_rev, old_tree)] if old_tree else []) + [("", ROOT)]:
                m = Mount(a.backend, work, CONFIGS[name], a.files, image, tree)
                try:
                    lsdir = m.mp
                    cold, warm = ls_seconds(lsdir)
                    fig = io_figures(m.mp, size, a.repeat)
                finally:
                    m.close()
                figs[label] = fig
                cells = "".join(f"{fig[c]:>10.0f} ({fig[c] / base[c]:.2f})" for c in cols)
                title = f"{name} @{label}" if label else name
                print(f"{title:<20}{cells}{cold:>11.2f}s{warm:>11.2f}s", flush=True)
            if old_tree:
                old, new = figs[a.baseline_rev], figs[""]
                cells = "".join(f"{'x ' + format(new[c] / old[c], '.2f'):>18}" for c in cols)
                print(f"{'  vs @' + a.baseline_rev:<20}{cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
