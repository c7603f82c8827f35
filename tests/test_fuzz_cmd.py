"""fsproto fuzz: a few seconds of real atheris/libFuzzer runs. A planted untyped exception in a
plugin format's parser is found and saved as a crash file that reproduces it; CMS and MBR run
clean and report executions and coverage.

The plugin is installed the way pip would (a dist-info with an fsproto.formats entry point on
PYTHONPATH), so the fuzz command reaches it with no extra code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)


def _env(tmp: Path) -> dict[str, str]:
    site = tmp / "site"
    info = site / "crashy-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crashy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fsproto.formats]\ncrashy = crash_planted:CRASHY\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT / "tests"), str(ROOT)])
    return env


def _fuzz(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fsproto", "fuzz", *args], env=env, capture_output=True, text=True,
                          timeout=150)


def test_fuzz_finds_a_planted_crash_and_names_its_file(tmp_path: Path) -> None:
    env = _env(tmp_path)
    out = tmp_path / "out"
    r = _fuzz(["--format", "crashy", "--seconds", "20", "--max-len", "2048", "--corpus", str(tmp_path / "c"),
               "--out", str(out)], env)
    assert r.returncode == 4, r.stdout + r.stderr
    crashes = sorted(out.glob("crash-*"))
    assert crashes and f"CRASH {crashes[0]}" in r.stdout.replace("\n", "")
    data = crashes[0].read_bytes()
    assert data[:2] == b"\xde\xad"
    # Replaying the saved input through the harness reproduces the same exception.
    rep = subprocess.run([sys.executable, "-m", "fsproto.fuzz.harness", "crashy", str(crashes[0])], env=env,
                         capture_output=True, text=True, timeout=60)
    assert rep.returncode != 0 and "IndexError: list index out of range" in rep.stdout + rep.stderr


@pytest.mark.parametrize("target", ["cms", "mbr"])
def test_fuzz_runs_clean_and_reports_coverage(tmp_path: Path, target: str) -> None:
    r = _fuzz(["--format", target, "--seconds", "4", "--out", str(tmp_path / "o")], dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"(\d+) executions .* coverage (\d+) edges", r.stdout.replace("\n", " "))
    assert m and int(m[1]) > 100 and int(m[2]) > 10, r.stdout
    assert "no crash found" in r.stdout and any((tmp_path / "o" / "corpus").iterdir())


def test_unknown_target_is_a_usage_error(tmp_path: Path) -> None:
    r = _fuzz(["--format", "nope", "--seconds", "1", "--out", str(tmp_path)], dict(os.environ))
    assert r.returncode == 16 and r.stderr.startswith("fsproto: error: unknown format 'nope'")
