"""Fork server for the CLI fuzz test (tests/test_cli_fuzz.py): corrupt metadata, run the verbs.

Run as ``python tests/cli_fuzz_driver.py FORMAT WORKDIR --seed N --cases N``; prints one JSON
object (the failures, and counts of what the runs ended with) on stdout.

Why a fork server: one ``python -m fsproto`` costs ~0.3 s of start-up, so a few hundred
corrupt images times six verbs would take many minutes on the project's 2 cores. This process
imports fsproto once, then forks one child per (image, verb); the child runs exactly what the
``fsproto`` console script runs (``sys.exit(cli(argv))``, uncaught exceptions reaching the
default hook and printing a traceback), under its own resource limits:

* ``RLIMIT_AS``: the parent's address space plus ``--mem-headroom`` MiB, so unbounded memory
  ends in MemoryError (a traceback, hence a failure) instead of swapping the machine;
* ``RLIMIT_FSIZE``: 64 MiB, so a looping file that ``cat``/``get`` would stream forever fails
  (Python ignores SIGXFSZ, so the write raises EFBIG: a traceback) instead of filling the disk;
* a wall-clock limit enforced by the parent (SIGKILL, reported as a hang).

A run passes when it exits 0, or exits non-zero with exactly one stderr line starting
``fsproto: error: ``; ``fsck`` may also exit 1 or 4 with its report on stdout (e2fsck's
bitmask), as long as stderr holds no traceback. The image's SHA-256 must not change.

``--canary`` runs deliberately broken children through the same checks (a traceback, a hang,
unbounded memory, a write to the image, a stream that never ends) and reports which ones the
checks caught, so the test can show that its checks are able to fail.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import sys
from pathlib import Path
from typing import Callable

# The checkout this file lives in, not whatever fsproto is installed (scratch copies test themselves).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fsproto.cli import cli  # noqa: E402

OUTPUT_LIMIT = 64 << 20
IMAGE_SIZE = "1M"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _vm_bytes() -> int:
    # VmSize of this process: the child's address-space limit is measured from here.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


# --- images --------------------------------------------------------------------------------


def _contents(rng: random.Random) -> dict[str, bytes]:
    """File contents: random bytes (so data blocks can be told from metadata) and text."""
    text = "".join(f"line {i} of the fuzz text file\n" for i in range(120)).encode()
    return {
        "SMALL.BIN": rng.randbytes(300),
        "BIG.BIN": rng.randbytes(40_000),  # needs pointer blocks (CMS) / a long chain (FAT)
        "NOTES.TEXT": text,
    }


def make_cms(img: Path, src: Path, files: dict[str, bytes]) -> list[list[str]]:
    """A 1 MiB CMS minidisk with binary (V) files and an F 80 text file; returns the verbs."""
    def run(argv: list[str]) -> None:
        if cli(argv) != 0:
            raise RuntimeError(f"fixture command failed: {argv}")
    run(["mkfs", "--format", "cms", "--block-size", "1024", "--label", "FUZZ01", "--size", IMAGE_SIZE, str(img)])
    for name, data in files.items():
        (src / name).write_bytes(data)
    run(["put", str(img), str(src / "SMALL.BIN"), str(src / "BIG.BIN")])
    run(["put", "--text", "--recfm", "F", "--lrecl", "80", str(img), str(src / "NOTES.TEXT")])
    return [
        ["ls", "-l"], ["cat", "BIG.BIN"], ["cat", "--text", "NOTES.TEXT"], ["get"],
        ["fsck"], ["dump"], ["dump", "BIG.BIN"], ["info"],
    ]


def make_fat(img: Path, src: Path, files: dict[str, bytes]) -> list[list[str]]:
    """A 1 MiB FAT12 image with files in the root and in two levels of directories."""
    from fsproto.formats.fat import FORMAT
    from fsproto.rawdev import ImageFile

    if cli(["mkfs", "--format", "fat", "--label", "FUZZ", "--size", IMAGE_SIZE, str(img)]) != 0:
        raise RuntimeError("fixture mkfs failed")
    with ImageFile(img, writable=True) as dev, FORMAT.open(dev) as fs:
        fs.mkdir("/dir")
        fs.mkdir("/dir/sub")
        placed = {"/small.bin": "SMALL.BIN", "/dir/A long file name.bin": "BIG.BIN",
                  "/dir/sub/notes.txt": "NOTES.TEXT"}
        for path, key in placed.items():
            fs.create(path)
            fs.write(path, 0, files[key])
    return [
        ["ls", "-l", "/dir"], ["cat", "/dir/A long file name.bin"], ["cat", "/dir/sub/notes.txt"], ["get"],
        ["fsck"], ["dump"], ["dump", "/dir/sub/notes.txt"], ["info"],
    ]


def metadata_offsets(image: bytes, files: dict[str, bytes], block: int = 512) -> list[int]:
    """Byte offsets of the 512-byte blocks that hold metadata: non-zero, and not file data.

    File data is recognised by content, not by asking the code under test where it put it:
    a block is data when most of its 16-byte windows occur in some file's bytes, raw or as
    EBCDIC text (CMS stores text in EBCDIC, blank-padded F records, or V records behind
    2-byte length fields).
    The random file contents make accidental matches with metadata impossible in practice.
    Blocks 0 and 1 are always included (labels, boot sectors).
    """
    haystacks = list(files.values()) + [d.decode("latin-1").encode("cp037") for d in files.values()]
    haystacks += [b"".join(line.ljust(80).encode("cp037") for line in d.decode("latin-1").splitlines())
                  for d in files.values()]  # the F 80 text file's records
    offsets = []
    for off in range(0, len(image), block):
        chunk = image[off:off + block]
        if off < 2 * block:
            offsets.append(off)
            continue
        if not chunk.strip(b"\0"):
            continue
        windows = [chunk[i:i + 16] for i in range(0, block, 16)]
        windows = [w for w in windows if w.strip(b"\0@")]  # skip padding (zeros, EBCDIC blanks)
        hits = sum(1 for w in windows if any(w in h for h in haystacks))
        if windows and hits * 2 >= len(windows):
            continue
        offsets.append(off)
    return offsets


def corrupt(image: bytes, offsets: list[int], rng: random.Random) -> tuple[bytes, list[tuple[int, int]]]:
    """Change 1..6 bytes, or 2/4-byte fields to extremes or to plausible block/cluster numbers,
    inside metadata blocks."""
    buf = bytearray(image)
    # Most picks land on bytes that are set (fields in use); the rest anywhere in the block,
    # so unused fields and slots are hit too.
    hot = [o for base in offsets for o in range(base, base + 512) if image[o]]
    changes = []
    for _ in range(rng.randint(1, 6)):
        if hot and rng.random() < 0.7:
            off = rng.choice(hot)
        else:
            off = rng.choice(offsets) + rng.randrange(512)
        kind = rng.random()
        if kind < 0.45:
            width, values = 1, [rng.randrange(256)]
        elif kind < 0.6:
            width, values = 2, [rng.choice([0x00, 0xFF, 0x7F, 0x80])] * 2
        elif kind < 0.75:
            width, values = 4, [rng.choice([0x00, 0xFF, 0x7F])] * 4
        elif kind < 0.9:
            # A plausible block number (CMS pointers are 4-byte big-endian): loops, cross-links.
            off &= ~3
            width, values = 4, list(rng.randrange(2100).to_bytes(4, "big"))
        else:
            # A plausible cluster number (FAT16/32 entries and directory fields are little-endian).
            off &= ~1
            width, values = 2, list(rng.randrange(2100).to_bytes(2, "little"))
        for i, v in enumerate(values[: min(width, len(buf) - off)]):
            buf[off + i] = v
            changes.append((off + i, v))
    return bytes(buf), changes


# --- running one child ---------------------------------------------------------------------


def run_child(target: Callable[[], None], workdir: Path, timeout: float, mem_limit: int,
              output_limit: int = OUTPUT_LIMIT) -> dict:
    """Fork, apply the limits, run *target* in the child; returns rc/signal/stdout/stderr facts."""
    out_path, err_path = workdir / "stdout", workdir / "stderr"
    pid = os.fork()
    if pid == 0:  # child: never returns
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
            resource.setrlimit(resource.RLIMIT_FSIZE, (output_limit, output_limit))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            target()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            # What the interpreter does for an uncaught exception: traceback, status 1.
            import traceback

            traceback.print_exc()
            code = 1
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    pidfd = os.pidfd_open(pid)
    try:
        exited = select.select([pidfd], [], [], timeout)[0]
    finally:
        os.close(pidfd)
    if not exited:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return {"hang": True, "rc": None, "signal": None, "stderr": _tail(err_path), "stdout_size": 0}
    _, status = os.waitpid(pid, 0)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    rc = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    return {"hang": False, "rc": rc, "signal": sig, "stderr": _tail(err_path),
            "stdout_size": out_path.stat().st_size}


def _tail(path: Path) -> str:
    data = path.read_bytes()
    return data[-4000:].decode("utf-8", "replace")


def verdict(verb: str, res: dict) -> str | None:
    """None when the run ended acceptably; otherwise what was wrong."""
    if res["hang"]:
        return "hang (killed at the time limit)"
    if res["signal"] is not None:
        return f"killed by signal {res['signal']}"
    err = res["stderr"]
    if "Traceback" in err:
        return "traceback: " + err.strip().splitlines()[-1][:300]
    if "File too large" in err:  # get turns EFBIG into a one-line error: still a runaway output
        return f"output passed the size limit: {err.strip()[:300]!r}"
    rc = res["rc"]
    if rc == 0:
        return None
    if verb == "fsck" and rc in (1, 4) and not err:
        return None  # problems reported on stdout, e2fsck's bitmask
    # Split on "\n" only: str.splitlines() would also split on \x1c..\x1e and hide a raw one.
    lines = err.split("\n")
    if len(lines) == 2 and lines[1] == "" and lines[0].startswith("fsproto: error: "):
        if lines[0].isprintable():
            return None
        return f"error line holds control characters: {lines[0][:300]!r}"
    return f"exit {rc} without a one-line error: {err.strip()[:300]!r}"


# --- the fuzz loop -------------------------------------------------------------------------


def _warm_up(verbs: list[list[str]], img: Path, out_dir: Path) -> None:
    """Run every verb once here, so the lazy imports happen once and not in every child."""
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stdout.flush()
        os.dup2(null, 1)
        os.dup2(null, 2)
        for verb in verbs:
            cli([verb[0], *(["-o", str(out_dir)] if verb[0] == "get" else []), str(img), *verb[1:]])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)



def fuzz(fmt: str, workdir: Path, seed: int, cases: int, timeout: float, headroom_mib: int) -> dict:
    rng = random.Random(seed)
    src = workdir / "src"
    src.mkdir(parents=True, exist_ok=True)
    files = _contents(random.Random(seed ^ 0x5EED))
    pristine_path = workdir / f"pristine.{fmt}"
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON result
        verbs = (make_cms if fmt == "cms" else make_fat)(pristine_path, src, files)
    pristine = pristine_path.read_bytes()
    offsets = metadata_offsets(pristine, files)
    img = workdir / f"case.{fmt}"
    mem_limit = _vm_bytes() + (headroom_mib << 20)
    _warm_up(verbs, pristine_path, workdir / "warm")
    # Children would otherwise copy every page the collector touches (copy-on-write).
    gc.freeze()
    failures: list[dict] = []
    kinds: set[str] = set()  # distinct error messages (numbers masked): which checks fired
    outcomes = {"ok": 0, "error": 0, "fsck_problems": 0, "runs": 0}

    # The pristine image first: every verb must succeed on it, or the fuzzing proves nothing.
    cases_list = [(None, pristine, [])]
    for case in range(cases):
        data, changes = corrupt(pristine, offsets, rng)
        cases_list.append((case, data, changes))

    for case, data, changes in cases_list:
        img.write_bytes(data)
        before = _sha(img)
        for verb in verbs:
            out_dir = workdir / "out"
            argv = [verb[0], *([str(img)] if verb[0] != "get" else ["-o", str(out_dir), str(img)]), *verb[1:]]
            if verb[0] == "get":
                shutil.rmtree(out_dir, ignore_errors=True)
                out_dir.mkdir()
            res = run_child(lambda: sys.exit(cli(argv)), workdir, timeout, mem_limit)
            outcomes["runs"] += 1
            bad = verdict(verb[0], res)
            if case is None and res["rc"] != 0:
                bad = bad or f"exit {res['rc']} on the pristine image"
            if bad is None:
                if res["rc"] == 0:
                    outcomes["ok"] += 1
                elif verb[0] == "fsck" and not res["stderr"].strip():
                    outcomes["fsck_problems"] += 1
                else:
                    outcomes["error"] += 1
                    kinds.add(re.sub(r"\d+", "N", res["stderr"].split(": ")[-1].strip())[:80])
            else:
                failures.append({"format": fmt, "seed": seed, "case": case, "argv": " ".join(verb),
                                 "changes": changes, "problem": bad})
        if _sha(img) != before:
            failures.append({"format": fmt, "seed": seed, "case": case, "argv": "(all verbs)",
                             "changes": changes, "problem": "the image changed"})
    return {"failures": failures, "outcomes": outcomes, "metadata_blocks": len(offsets),
            "error_kinds": sorted(kinds)}


# --- canaries: the checks must catch each of these -----------------------------------------


def canaries(workdir: Path, timeout: float, headroom_mib: int) -> dict:
    """Run broken children through run_child/verdict and the hash check; report what was caught."""
    workdir.mkdir(parents=True, exist_ok=True)
    img = workdir / "canary.img"
    img.write_bytes(b"\0" * 4096)
    mem_limit = _vm_bytes() + (headroom_mib << 20)

    def traceback_child() -> None:
        raise ValueError("deep inside")

    def hang_child() -> None:
        while True:
            pass

    def memory_child() -> None:
        hog = []
        while True:
            hog.append(bytearray(16 << 20))

    def stream_child() -> None:
        chunk = b"x" * (1 << 20)
        while True:
            sys.stdout.buffer.write(chunk)

    def runaway_get_child() -> None:
        sys.exit(cli(["get", "-o", str(workdir / "runaway"), str(workdir / "runaway.img")]))

    def two_lines_child() -> None:
        print("fsproto: error: one", file=sys.stderr)
        print("and another line", file=sys.stderr)
        sys.exit(8)

    def control_child() -> None:
        print("fsproto: error: /DIR\x1c\x1b[2J: bad", file=sys.stderr)
        sys.exit(8)

    def writer_child() -> None:
        with open(img, "r+b") as f:
            f.write(b"\1")

    caught = {}
    for name, target in [("traceback", traceback_child), ("hang", hang_child), ("memory", memory_child),
                         ("stream", stream_child), ("two_lines", two_lines_child), ("control_chars", control_child)]:
        caught[name] = verdict("cat", run_child(target, workdir, timeout, mem_limit)) is not None
    # get of a file bigger than the output limit (64 KiB here): the one-line EFBIG error
    # HostFileError makes of it must still count as a runaway output.
    big = workdir / "runaway.img"
    with contextlib.redirect_stdout(sys.stderr):
        cli(["mkfs", "--format", "fat", "--size", "1M", str(big)])
    from fsproto.formats.fat import FORMAT
    from fsproto.rawdev import ImageFile

    with ImageFile(big, writable=True) as dev, FORMAT.open(dev) as fs:
        fs.create("/big.bin")
        fs.write("/big.bin", 0, bytes(100_000))
    caught["runaway_get"] = verdict("get", run_child(runaway_get_child, workdir, timeout, mem_limit,
                                                     output_limit=64 << 10)) is not None
    before = _sha(img)
    run_child(writer_child, workdir, timeout, mem_limit)
    caught["write"] = _sha(img) != before
    # And a well-behaved error must pass, or the checks would reject everything.
    caught["clean_error_passes"] = verdict(
        "ls", run_child(lambda: sys.exit(cli(["ls", str(img)])), workdir, timeout, mem_limit)) is None
    return caught


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("format", choices=["cms", "fat", "canary"])
    p.add_argument("workdir", type=Path)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", type=int, default=100)
    p.add_argument("--timeout", type=float, default=10.0, help="wall-clock seconds per run")
    p.add_argument("--mem-headroom", type=int, default=256, help="MiB of address space above the parent's")
    a = p.parse_args()
    if a.format == "canary":
        result = canaries(a.workdir, a.timeout, a.mem_headroom)
    else:
        result = fuzz(a.format, a.workdir, a.seed, a.cases, a.timeout, a.mem_headroom)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
