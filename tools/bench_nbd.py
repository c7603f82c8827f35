#!/usr/bin/env python3
"""Benchmark: reads through ``fsproto serve`` vs ``nbdkit file`` and ``qemu-nbd`` on the same raw image.

Makes a random-filled raw image (so reads come from the page cache, not holes), starts the three
servers at once, each on its own unix socket, read-only, and reads the export through:

* ``seq 1M libnbd``: one libnbd connection (Python binding), sequential 1 MiB ``pread``s of the whole image;
* ``rand 4K libnbd``: the same connection, ``--random-ops`` 4 KiB ``pread``s at random aligned offsets;
* ``seq nbdcopy``: ``nbdcopy URI null:`` (its defaults: several connections, requests in flight).

Rounds are interleaved (every server once per round, ``--repeat`` rounds) and each figure is the
best round; the ratio column is time(nbdkit file) / time(server) from the same run, so 1.0 means as
fast as nbdkit's C file plugin and the target for ``fsproto serve`` at 1 MiB is >= 0.8.

``--baseline-rev REV`` adds a fourth server: ``fsproto serve`` with the fsproto of git revision
REV (extracted with ``git archive``; it must have fsproto/serve), in the same interleaved rounds.

Usage: ``python tools/bench_nbd.py [--size-mib 512] [--repeat 7] [--random-ops 20000] [--dir DIR]
[--baseline-rev REV]``
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from typing import Callable

from rich.console import Console
from rich.table import Table

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import nbd  # noqa: E402

from fsproto.serve.export import ServeConfig  # noqa: E402
from fsproto.serve.server import NbdServer  # noqa: E402
from fsproto.subproc import HelperProcess  # noqa: E402

MiB = 1 << 20
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def make_image(path: str, size: int) -> None:
    chunk = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(i.to_bytes(8, "little") + chunk[8:])  # every MiB differs


def wait_for_socket(path: str, helper: HelperProcess) -> None:
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if helper.failure() or time.monotonic() > deadline:
            raise SystemExit(f"bench_nbd: {helper.what} did not start: {helper.failure()}")
        time.sleep(0.01)
    time.sleep(0.1)  # listen() follows bind()


def seq_libnbd(uri: str, size: int) -> Callable[[], int]:
    def run() -> int:
        h = nbd.NBD()
        h.connect_uri(uri)
        total = 0
        for off in range(0, size, MiB):
            total += len(h.pread(MiB, off))
        h.shutdown()
        return total
    return run


def rand_libnbd(uri: str, size: int, ops: int) -> Callable[[], int]:
    offsets = [random.Random(42).randrange(size // 4096) * 4096 for _ in range(ops)]

    def run() -> int:
        h = nbd.NBD()
        h.connect_uri(uri)
        total = 0
        for off in offsets:
            total += len(h.pread(4096, off))
        h.shutdown()
        return total
    return run


def seq_nbdcopy(uri: str, size: int) -> Callable[[], int]:
    def run() -> int:
        subprocess.run(["nbdcopy", uri, "null:"], check=True)
        return size
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--random-ops", type=int, default=20000)
    ap.add_argument("--dir", default=None, help="Where to put the image (default: a temp dir).")
    ap.add_argument("--baseline-rev", default=None, help="Also serve with the fsproto of this git revision.")
    args = ap.parse_args(argv)
    size = args.size_mib * MiB
    out = Console()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        img = os.path.join(d, "bench.img")
        make_image(img, size)
        with open(img, "rb") as f:  # warm the page cache
            while f.read(8 * MiB):
                pass
        nbdkit_sock, qemu_sock = os.path.join(d, "nbdkit.sock"), os.path.join(d, "qemu.sock")
        nbdkit = HelperProcess(["nbdkit", "--foreground", "--exit-with-parent", "-r", "--unix", nbdkit_sock,
                                "file", img], what="nbdkit file")
        qemu = HelperProcess(["qemu-nbd", "--read-only", "--persistent", "--shared=0", "--format=raw",
                              f"--socket={qemu_sock}", img], what="qemu-nbd")
        fsp = NbdServer(ServeConfig(img, writable=False), read_only=True)
        old = None
        if args.baseline_rev:
            tree = os.path.join(d, "baseline")
            os.mkdir(tree)
            archive = subprocess.run(["git", "-C", ROOT, "archive", args.baseline_rev, "fsproto"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
            old = NbdServer(ServeConfig(img, writable=False), read_only=True, tree=tree)
        try:
            wait_for_socket(nbdkit_sock, nbdkit)
            wait_for_socket(qemu_sock, qemu)
            fsp.start()
            servers = {"nbdkit file": f"nbd+unix:///?socket={nbdkit_sock}",
                       "qemu-nbd": f"nbd+unix:///?socket={qemu_sock}",
                       "fsproto serve": fsp.uri}
            if old is not None:
                old.start()
                servers[f"fsproto @{args.baseline_rev}"] = old.uri
            tests = {"seq 1M libnbd": lambda u: seq_libnbd(u, size),
                     f"rand 4K libnbd ({args.random_ops} ops)": lambda u: rand_libnbd(u, size, args.random_ops),
                     "seq nbdcopy": lambda u: seq_nbdcopy(u, size)}
            best: dict[tuple[str, str], float] = {}
            for rnd in range(args.repeat):
                for test, make in tests.items():
                    for server, uri in servers.items():
                        fn = make(uri)
                        t0 = time.perf_counter()
                        assert fn() > 0
                        dt = time.perf_counter() - t0
                        key = (test, server)
                        best[key] = min(best.get(key, float("inf")), dt)
                out.print(f"round {rnd + 1}/{args.repeat} done", style="dim")
        finally:
            fsp.stop()
            if old is not None:
                old.stop()
            nbdkit.stop()
            qemu.stop()
            nbdkit.close_log()
            qemu.close_log()
    table = Table(title=f"NBD reads of a {args.size_mib} MiB raw image (best of {args.repeat} interleaved rounds)",
                  title_justify="left")
    for col in ("test", "server", "time", "throughput", "vs nbdkit file"):
        table.add_column(col, justify="left" if col in ("test", "server") else "right")
    for test in tests:
        base = best[(test, "nbdkit file")]
        for server in servers:
            t = best[(test, server)]
            if test.startswith("rand"):
                rate = f"{args.random_ops / t:,.0f} IOPS"
            else:
                rate = f"{size / MiB / t:,.0f} MiB/s"
            table.add_row(test, server, f"{t:.3f} s", rate, f"{base / t:.2f}x")
    out.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
