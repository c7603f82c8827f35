"""Child processes fsproto starts in their own session (QEMU for qtest, the lab and the reference;
nbdkit and qemu-nbd for NBD serving and container images)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile


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


class HelperProcess:
    """A server fsproto starts for itself (nbdkit, qemu-nbd), in its own session.

    Its output goes to an unlinked temp file, or *log_path* (never a pipe: a helper must not block on a reader
    that stopped reading), so :meth:`failure` can quote its last line. :meth:`stop` asks it to
    quit with SIGTERM (both servers flush and close the image on it), then SIGKILLs its group
    and reaps it; idempotent. Raises DeviceError (via the caller's *what*) when it cannot start.
    """

    def __init__(self, argv: list[str], *, what: str, env: dict[str, str] | None = None,
                 exits_by_itself: bool = False, pass_fds: tuple[int, ...] = (), log_path: str | None = None) -> None:
        self.what = what
        self.exits_by_itself = exits_by_itself  # stop() then first waits for it (qemu-nbd after the last client)
        self.argv = argv
        if log_path is None:
            self._log = tempfile.TemporaryFile()
        else:  # kept for the user (fsproto serve --log); still what failure() quotes
            try:
                self._log = open(log_path, "w+b")
            except OSError as e:
                from fsproto.errors import HostFileError

                raise HostFileError(f"{log_path}: cannot write the log: {e.strerror}", errno=e.errno) from None
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                         start_new_session=True, env=env, close_fds=True,
                                         pass_fds=pass_fds)
        except OSError as e:
            self._log.close()
            from fsproto.errors import DeviceError

            raise DeviceError(f"cannot start {argv[0]}: {e.strerror}") from None
        self._stopped = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        """Everything the helper printed so far (its stderr and stdout)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def last_line(self) -> str:
        lines = [ln.strip() for ln in self.output().splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def failure(self, wait_s: float = 0.0) -> str | None:
        """None while the helper runs; once it has exited, one line saying how (for errors).

        *wait_s*: give a helper that is dying a moment (its socket closes before it can be reaped).
        """
        if wait_s:
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                pass
        code = self.proc.poll()
        if code is None:
            return None
        how = f"exit status {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        line = self.last_line()
        return f"{self.what} exited ({how})" + (f": {line}" if line else "")

    def stop(self, *, grace_s: float = 10) -> int | None:
        """SIGTERM, wait up to *grace_s*, then SIGKILL the group; returns the exit status."""
        if not self._stopped:
            self._stopped = True
            if self.exits_by_itself:
                try:
                    self.proc.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(signal.SIGTERM)
                    self.proc.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    pass
                except ProcessLookupError:
                    pass
            kill_group(self.proc)
        return self.proc.returncode

    def close_log(self) -> None:
        self._log.close()
