"""Long verbs draw a rich progress bar on a terminal and stay quiet when piped: the CLI run as a
real process with its stderr on a pseudo-terminal, then on a pipe."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

FSPROTO = [sys.executable, "-m", "fsproto"]


def _run_on_pty(argv: list[str]) -> tuple[int, str]:
    """Run with stderr on a pty (stdout piped); returns status and what the terminal got."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, COLUMNS="100", TERM="xterm"))
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=120), out.decode(errors="replace")


def test_progress_on_a_terminal_quiet_when_piped(tmp_path: Path) -> None:
    img = tmp_path / "disk.cms"
    big = tmp_path / "BIG.DATA"
    big.write_bytes(os.urandom(16 << 20))
    status, term = _run_on_pty([*FSPROTO, "mkfs", "--format", "cms", "--size", "64M", str(img)])
    assert status == 0 and "formatting" in term
    status, term = _run_on_pty([*FSPROTO, "put", str(img), str(big)])
    assert status == 0 and "copying in" in term
    status, term = _run_on_pty([*FSPROTO, "get", "-o", str(tmp_path / "out"), str(img)])
    assert status == 0 and "extracting" in term
    status, term = _run_on_pty([*FSPROTO, "fsck", str(img)])
    assert status == 0 and "checking" in term
    assert (tmp_path / "out" / "BIG.DATA").read_bytes() == big.read_bytes()
    # Piped: no bar, no escape sequences; only the one-line notes the verbs always print.
    img2 = tmp_path / "disk2.cms"
    r = subprocess.run([*FSPROTO, "mkfs", "--format", "cms", "--size", "64M", str(img2)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == f"{img2}: formatted as cms\n"
    r = subprocess.run([*FSPROTO, "put", str(img2), str(big)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "" and r.stdout == "BIG.DATA\n"
    r = subprocess.run([*FSPROTO, "get", "-o", str(tmp_path / "out2"), str(img2)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == f"extracted 1 file(s) to {tmp_path / 'out2'}\n"
    r = subprocess.run([*FSPROTO, "fsck", str(img2)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "" and "\x1b" not in r.stdout
