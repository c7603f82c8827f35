"""Fuzz the CLI end to end on corrupt CMS and FAT images (seeded, bounded).

For each format, a small valid image gets random metadata bytes changed, then ``ls``, ``cat``,
``get``, ``fsck``, ``dump`` and ``info`` run on it, each in its own process (forked from
tests/cli_fuzz_driver.py, which runs ``sys.exit(cli(argv))`` as the console script does) with
an address-space limit, an output-size limit and a wall-clock limit. Every run must exit 0 or
print one ``fsproto: error: ...`` line (fsck may also report problems with status 1 or 4), with
no traceback, and the image's SHA-256 must not change.

The canary test feeds the same checks deliberately broken children, so a check that could not
fail would show up there; ``test_console_script_under_prlimit`` runs the real entry point
under ``prlimit`` on corrupt images, so the fork server is not the only way in.

Reproduce one failure: ``python tests/cli_fuzz_driver.py cms /tmp/fz --seed S --cases N``
prints the failing case number, verb and the bytes that were changed.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "cli_fuzz_driver.py"
SEED = 20261124
CASES = 100  # per format: 808 forked runs each, ~20 s on the project's 2 cores
RUN_TIMEOUT = 10.0  # seconds per run; a healthy run takes well under 0.1 s


def _driver(*args: str, timeout: float = 240) -> dict:
    out = subprocess.run([sys.executable, str(DRIVER), *args], capture_output=True, text=True,
                         timeout=timeout, cwd=HERE)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_checks_catch_each_kind_of_misbehaviour(tmp_path: Path) -> None:
    caught = _driver("canary", str(tmp_path), "--timeout", "2", "--mem-headroom", "128")
    assert caught == {"traceback": True, "hang": True, "memory": True, "stream": True, "two_lines": True,
                      "control_chars": True, "runaway_get": True, "write": True,
                      "clean_error_passes": True}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fmt", ["cms", "fat"])
def test_corrupt_metadata_gives_one_line_errors_and_writes_nothing(fmt: str, tmp_path: Path) -> None:
    result = _driver(fmt, str(tmp_path), "--seed", str(SEED), "--cases", str(CASES),
                     "--timeout", str(RUN_TIMEOUT))
    failures = result["failures"]
    assert failures == [], "\n".join(json.dumps(f) for f in failures[:20])
    o = result["outcomes"]
    assert o["runs"] == (CASES + 1) * 8
    # The fuzzing must reach the error paths, or it proves nothing: a good share of the runs
    # end in a one-line error, and several different checks fire.
    assert o["error"] + o["fsck_problems"] >= o["runs"] // 10, o
    assert len(result["error_kinds"]) >= 5, result["error_kinds"]
    assert o["ok"] > 0


def _corrupt_copies(fmt: str, tmp_path: Path, n: int) -> list[Path]:
    """n corrupt images made by the driver's own generator and corruptor (no fork server)."""
    sys.path.insert(0, str(HERE))
    try:
        import cli_fuzz_driver as d
    finally:
        sys.path.remove(str(HERE))
    src = tmp_path / "src"
    src.mkdir()
    files = d._contents(random.Random(SEED))
    pristine = tmp_path / f"pristine.{fmt}"
    (d.make_cms if fmt == "cms" else d.make_fat)(pristine, src, files)
    data = pristine.read_bytes()
    offsets = d.metadata_offsets(data, files)
    rng = random.Random(SEED)
    images = []
    for i in range(n):
        img = tmp_path / f"bad{i}.{fmt}"
        img.write_bytes(d.corrupt(data, offsets, rng)[0])
        images.append(img)
    return images


@pytest.mark.parametrize("fmt", ["cms", "fat"])
def test_console_script_under_prlimit(fmt: str, tmp_path: Path, capsys) -> None:
    """The real ``python -m fsproto`` process, limited by prlimit (256 MiB address space,
    30 s CPU), on a few corrupt images: one-line errors, no traceback, image unchanged."""
    images = _corrupt_copies(fmt, tmp_path, 3)
    capsys.readouterr()
    target = "BIG.BIN" if fmt == "cms" else "/dir/A long file name.bin"
    for img in images:
        before = hashlib.sha256(img.read_bytes()).hexdigest()
        for verb in (["ls", "-l", str(img)], ["cat", str(img), target], ["fsck", str(img)]):
            r = subprocess.run(["prlimit", "--as=268435456", "--cpu=30", sys.executable, "-m", "fsproto", *verb],
                               capture_output=True, timeout=60, cwd=HERE.parent)
            err = r.stderr.decode("utf-8", "replace")
            assert "Traceback" not in err, (verb, err)
            assert r.returncode >= 0, (verb, r.returncode)  # not killed by a signal
            if r.returncode and not (verb[0] == "fsck" and r.returncode in (1, 4) and not err):
                assert err.count("\n") == 1 and err.startswith("fsproto: error: "), (verb, err)
        assert hashlib.sha256(img.read_bytes()).hexdigest() == before


def test_error_line_escapes_control_characters(tmp_path: Path, capsys) -> None:
    """Names in messages come from images and arguments: a newline, \\x1c or ESC must not split
    the one error line or reach the terminal raw (found by the fuzzer: FAT names with \\x1c)."""
    from fsproto.cli import cli

    bad = tmp_path / "dir\x1cname\nwith\x1b[2Jesc.img"
    assert cli(["ls", str(bad)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n") and err.startswith("fsproto: error: ")
    assert err[:-1].isprintable(), repr(err)
    assert "dir\\x1cname\\nwith\\x1b[2Jesc.img" in err
