#!/usr/bin/env python3
"""Benchmark: sequential reads through ImageFile vs plain ``os.preadv`` of the same file.

Makes a 512 MiB image filled with real (random) data so reads come from the page cache, not
from holes, reads it once to warm the cache, then times whole-file sequential passes with
4 KiB and 1 MiB requests:

* baseline: ``os.preadv`` into one preallocated buffer (the cheapest Python can do);
* ``ImageFile.read`` with 512-byte blocks (the default an image is opened with);
* ``BlockSizeAdapter`` presenting 4 KiB blocks on that 512-byte ImageFile (what CMS uses).

Each figure is the best of ``--repeat`` passes; the ratios (time / baseline time, measured in
the same run) are what to compare between machines, not the absolute MB/s.

Usage: ``python tools/bench_rawdev.py [--size-mib 512] [--repeat 3] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fsproto.rawdev import BlockSizeAdapter, ImageFile  # noqa: E402

MiB = 1 << 20


def make_image(path: str, size: int) -> None:
    """Fill *path* with random data, 1 MiB at a time, behind a progress bar."""
    chunk = os.urandom(MiB)
    cols = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with open(path, "wb") as f, Progress(*cols, transient=True) as bar:
        task = bar.add_task("writing image", total=size // MiB)
        for i in range(size // MiB):
            # Vary each MiB so no layer can dedupe or compress it away.
            f.write(i.to_bytes(8, "little") + chunk[8:])
            bar.advance(task)


def best_of(repeat: int, fn: Callable[[], int]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        total = fn()
        best = min(best, time.perf_counter() - t0)
    assert total > 0
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=512, help="image size in MiB (default 512)")
    ap.add_argument("--repeat", type=int, default=3, help="passes per figure; the best counts (default 3)")
    ap.add_argument("--dir", default=None, help="where to make the image (default: a temporary directory)")
    args = ap.parse_args(argv)
    size = args.size_mib * MiB
    console = Console()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-rawdev-") as tmp:
        path = os.path.join(tmp, "bench.img")
        make_image(path, size)
        fd = os.open(path, os.O_RDONLY)
        try:
            def preadv_pass(req: int) -> Callable[[], int]:
                buf = bytearray(req)

                def run() -> int:
                    done = 0
                    for off in range(0, size, req):
                        done += os.preadv(fd, [buf], off)
                    return done

                return run

            def image_pass(dev, req: int) -> Callable[[], int]:
                per = req // dev.block_size

                def run() -> int:
                    done = 0
                    for lba in range(0, dev.num_blocks, per):
                        done += len(dev.read(lba, per))
                    return done

                return run

            img = ImageFile(path)
            adapted = BlockSizeAdapter(ImageFile(path), 4096)
            preadv_pass(MiB)()  # warm the page cache: every later pass reads from memory
            table = Table(title=f"sequential read of a {args.size_mib} MiB image (best of {args.repeat})")
            for col in ("request", "reader", "MB/s", "µs/request", "ratio vs preadv"):
                table.add_column(col, justify="left" if col in ("request", "reader") else "right")
            for req in (4096, MiB):
                n = size // req
                base = best_of(args.repeat, preadv_pass(req))
                rows = [("os.preadv (baseline)", base),
                        ("ImageFile (512 B blocks)", best_of(args.repeat, image_pass(img, req))),
                        ("BlockSizeAdapter 4 KiB on ImageFile", best_of(args.repeat, image_pass(adapted, req)))]
                for name, t in rows:
                    table.add_row(f"{req // 1024} KiB", name, f"{size / t / 1e6:.0f}", f"{t / n * 1e6:.2f}",
                                  f"{t / base:.2f}")
            img.close()
            adapted.close()
        finally:
            os.close(fd)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
