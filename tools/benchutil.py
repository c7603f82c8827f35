"""Helpers the benchmarks share: a baseline source tree from git, and interleaved command timing.

Each figure is measured against its baseline in the same run, alternating run by run (the
machine is shared), and the best of each is kept; callers print ratios.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def extract_tree(rev: str, where: Path) -> Path:
    """``fsproto/`` as of git revision *rev*, unpacked under *where*; returns the tree's root."""
    tree = where / f"tree-{rev}"
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "fsproto"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def fsproto_command(tree: Path, *args: str) -> list[str]:
    """The fsproto CLI of source tree *tree*, run by this interpreter (formats resolve in that tree)."""
    boot = f"import sys; sys.path.insert(0, {str(tree)!r}); from fsproto.cli import main; main()"
    return [sys.executable, "-c", boot, *args]


def time_commands(commands: dict[str, list[str]], runs: int, *, env: dict[str, str] | None = None
                  ) -> dict[str, list[float]]:
    """Wall-clock seconds of each command (output discarded), alternating, after one untimed
    warm-up round (page cache, and .pyc files where the environment allows writing them)."""
    times: dict[str, list[float]] = {k: [] for k in commands}
    for r in range(runs + 1):
        for name, cmd in commands.items():
            t = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env)
            if r:
                times[name].append(time.perf_counter() - t)
    return times


def normal_env() -> dict[str, str]:
    """The environment with bytecode caching on, as on an installed system (this sandbox sets
    PYTHONDONTWRITEBYTECODE, which makes every run recompile every module it imports)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env
