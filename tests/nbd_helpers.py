"""Helpers for the NBD tests: a real ``fsproto serve`` child process, the fsproto CLI as a child,
and the process-table check that no nbdkit/qemu-nbd outlived a test."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent
HELPER_NAMES = ("nbdkit", "qemu-nbd", "qemu-system-x86")  # comm is cut at 15 characters


def fsproto(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    """The fsproto CLI in a child process (so its own helpers are its children, as for a user)."""
    done = subprocess.run([sys.executable, "-m", "fsproto", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=PROJECT_ROOT)
    if check and done.returncode != 0:
        raise AssertionError(f"fsproto {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


def helpers_mentioning(marker: str) -> list[str]:
    """nbdkit / qemu-nbd processes whose command line mentions *marker*, and unreaped ones of ours."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if comm not in HELPER_NAMES:
            continue
        if marker in cmd or (state == "Z" and int(ppid) == os.getpid()):  # a zombie's cmdline is empty
            found.append(f"{pid} {comm} [{state}] {cmd}")
    return found


def wait_no_helpers(marker: str, timeout: float = 10) -> list[str]:
    """Give exiting helpers a moment, then return the ones still there."""
    deadline = time.monotonic() + timeout
    while True:
        left = helpers_mentioning(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


class Served:
    """``fsproto serve ARGS...`` running in a child; ``uri`` from its first line of output."""

    def __init__(self, *args: str, timeout: float = 60) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "fsproto", "serve", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
        self.stdout = ""
        self.stderr = ""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line.startswith("serving "):
            self.proc.kill()
            out, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"fsproto serve did not start: {line!r} {out!r} {err!r}")
        self.banner = line.strip()
        self.uri = line.split(" at ", 1)[1].strip()

    def nbdkit_pid(self) -> int:
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            return int(f.read().split()[0])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the server and wait; returns its exit status (output in stdout/stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        self.stdout += out
        self.stderr += err
        return self.proc.returncode

    def __enter__(self) -> "Served":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()
