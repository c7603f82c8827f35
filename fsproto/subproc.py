"""Child processes fsproto starts in their own session (QEMU for qtest, the lab and the reference)."""

from __future__ import annotations

import os
import signal
import subprocess


def kill_group(proc: subprocess.Popen, *, wait_s: float = 10) -> None:  # type: ignore[type-arg]
    """SIGKILL *proc*'s process group (its own session: ``start_new_session=True``) and reap it.

    Never raises: a group already gone, or one that outlives *wait_s* (stuck in the kernel),
    is left as it is.
    """
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        pass
