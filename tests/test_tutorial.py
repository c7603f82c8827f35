"""docs/plugins.md, executed: the tutorial's plugin file is installed the way ``pip install -e .``
would register it (a dist-info with an ``fsproto.formats`` entry point), then every ``$`` line
of the doc's console blocks runs in order (mkfs, put, ls, cat, FUSE mount, cp, umount, fsck,
dump, and pytest on the doc's conformance test file)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fuse_helpers import force_unmount

from fsproto.formats.tutorial import FORMAT
from fsproto.rawdev import ImageFile

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "plugins.md"

pytestmark = [pytest.mark.mount, pytest.mark.timeout(300)]


def doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def install_plugin(tmp: Path) -> dict[str, str]:
    """tinyfs.py (a copy of the tutorial) + the metadata `pip install -e .` would write."""
    site = tmp / "site"
    site.mkdir()
    shutil.copy(ROOT / "fsproto" / "formats" / "tutorial.py", site / "tinyfs.py")
    info = site / "tinyfs-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyfs\nVersion: 0.1.0\n")
    toml = next(b for b in doc_blocks("toml") if "fsproto.formats" in b)
    ep = re.search(r'^(\w+) = "([\w.]+:\w+)"', toml, re.M)
    assert ep, toml
    (info / "entry_points.txt").write_text(f"[fsproto.formats]\n{ep.group(1)} = {ep.group(2)}\n")
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "fsproto").write_text(f'#!/bin/sh\nexec {sys.executable} -m fsproto "$@"\n')
    (bindir / "fsproto").chmod(0o755)
    # The tutorial's reader works in an activated venv: `python` is this interpreter, not
    # whatever a bare PATH finds first (pyenv's, without fsproto's dependencies).
    (bindir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bindir / "python").chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bindir}:{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    return env


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    env = install_plugin(tmp_path)
    work = tmp_path / "work"
    (work / "tests").mkdir(parents=True)
    test_file = next(b for b in doc_blocks("python") if b.startswith("# tests/test_tiny.py"))
    (work / "tests" / "test_tiny.py").write_text(test_file)
    commands = [line[2:] for block in doc_blocks("console") for line in block.splitlines() if line.startswith("$ ")]
    assert any(c.startswith("fsproto mount") for c in commands) and any("pytest" in c for c in commands)
    outputs = {}
    try:
        for cmd in commands:
            r = subprocess.run(["bash", "-c", cmd], cwd=work, env=env, capture_output=True, text=True, timeout=240)
            assert r.returncode == 0, f"$ {cmd}\n{r.stdout}\n{r.stderr}"
            outputs[cmd] = r.stdout
    finally:
        force_unmount(work / "mnt")
    assert outputs["fsproto cat disk.img hello.txt"] == "hello, tiny world\n"
    assert outputs["ls mnt"].split() == ["copy.txt", "hello.txt"]
    assert "hello.txt" in outputs["fsproto ls -l disk.img"]
    assert "passed" in next(v for k, v in outputs.items() if "pytest" in k)
    with ImageFile(work / "disk.img") as dev:
        fs = FORMAT.open(dev)
        assert fs.read("/copy.txt", 0, 100) == fs.read("/hello.txt", 0, 100) == b"hello, tiny world\n"
        assert fs.statfs().label == "demo"
