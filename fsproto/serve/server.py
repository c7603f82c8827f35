"""NbdServer: nbdkit serving one fsproto device, started, watched and stopped from fsproto.

nbdkit runs in the foreground in its own session (so a terminal's Ctrl-C reaches only
``fsproto serve``, which then stops nbdkit in order), with ``--exit-with-parent`` (if fsproto
dies, nbdkit still shuts down cleanly, flushing) and a pidfile, which nbdkit writes once it
listens: that is the readiness signal. Everything lives in a 0700 temp directory: the default
unix socket (nothing listens on TCP unless ``port`` is given, and then on 127.0.0.1 unless
``bind`` says otherwise), the pidfile, and the plugin's status file, through which an error in
opening the device comes back as its fsproto error type and message.

Stopping (``stop()``, a signal to ``fsproto serve``): "stop" on the control pipe (see
:mod:`fsproto.serve.plugin`): the plugin flushes and closes the device, the status file says
``closed``, nbdkit exits (within a few seconds even while idle clients stay connected); it is
reaped, SIGKILLed only if it is still there. A flush that failed there is raised as MediaError.
If fsproto itself dies, the pipe's EOF does the same.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sysconfig
import tempfile
import time
from types import TracebackType

from fsproto import errors
from fsproto.errors import DeviceBusy, DeviceError, FsprotoError, MediaError, UsageError
from fsproto.serve.export import ServeConfig, parse_fault_spec
from fsproto.subproc import HelperProcess

START_TIMEOUT_S = 60.0  # opening an nvme:qtest device boots QEMU's model; an image opens in ~0.3 s
STOP_TIMEOUT_S = 60.0  # a flush at shutdown may write back a large overlay or cache


def _sitedirs(tree: str | None = None) -> list[str]:
    """What the plugin's interpreter must see: fsproto's source tree (*tree*, default this one) and
    this venv's site-packages."""
    import fsproto

    dirs = [tree or os.path.dirname(os.path.dirname(os.path.abspath(fsproto.__file__)))]
    for key in ("purelib", "platlib"):
        d = sysconfig.get_path(key)
        if d and d not in dirs:
            dirs.append(d)
    return dirs


def plugin_path(tree: str | None = None) -> str:
    """The plugin script's file (not imported here: it needs nbdkit's built-in ``nbdkit`` module)."""
    if tree is not None:
        return os.path.join(tree, "fsproto", "serve", "plugin.py")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugin.py")


def _check_port_free(bind: str, port: int) -> None:
    """One line now rather than nbdkit's bind error later. Raises DeviceBusy."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nbdkit does
        try:
            s.bind((bind, port))
        except OSError as e:
            raise DeviceBusy(f"cannot listen on {bind}:{port}: {e.strerror} (is another server on that port?)") from None


class NbdServer:
    """Serve *config* over NBD; ``start()`` returns once clients can connect.

    ``socket_path`` (default: a private one) or ``port`` (+ ``bind``, default 127.0.0.1).
    *log_path* keeps nbdkit's messages (every request with *verbose*) in that file.
    *tree* runs the plugin of another fsproto source tree (benchmarks against an older revision).
    Raises on start: the device's own errors (DeviceNotFound, DeviceBusy, FormatError...) as
    their fsproto types, DeviceBusy for a taken port, DeviceError when nbdkit fails otherwise.
    """

    def __init__(self, config: ServeConfig, *, socket_path: str | None = None, port: int | None = None,
                 bind: str = "127.0.0.1", read_only: bool = False, verbose: bool = False,
                 tree: str | None = None, log_path: str | None = None) -> None:
        if socket_path is not None and port is not None:
            raise UsageError("give --socket or --port, not both")
        if config.fault:
            parse_fault_spec(config.fault)  # a bad spec is a usage error here, not an nbdkit failure
        if shutil.which("nbdkit") is None:
            raise DeviceError("fsproto serve needs nbdkit and its Python plugin (Debian: nbdkit nbdkit-plugin-python)")
        self.config = config
        self.port = port
        self.bind = bind
        self.read_only = read_only or not config.writable
        self.verbose = verbose
        self.tree = tree
        self.log_path = log_path
        self._dir = tempfile.mkdtemp(prefix="fsproto-serve-")  # 0700
        self.socket_path = None if port is not None else (socket_path or os.path.join(self._dir, "nbd.sock"))
        self._pidfile = os.path.join(self._dir, "nbdkit.pid")
        self._status = os.path.join(self._dir, "status")
        self.helper: HelperProcess | None = None
        self._control_w: int | None = None
        self.size = 0
        self.block_size = 0

    # -- where clients connect -------------------------------------------------------------
    @property
    def uri(self) -> str:
        export = self.config.export
        if self.socket_path is not None:
            return f"nbd+unix:///{export}?socket={self.socket_path}"
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"nbd://{host}:{self.port}/{export}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "NbdServer":
        try:
            return self._start()
        except BaseException:
            self._cleanup_files()  # a refused start leaves no private directory behind
            raise

    def _start(self) -> "NbdServer":
        if self.port is not None:
            _check_port_free(self.bind, self.port)
        elif os.path.exists(self.socket_path):  # type: ignore[arg-type]
            raise DeviceBusy(f"{self.socket_path} exists (another server?); remove it or choose another --socket")
        argv = ["nbdkit", "--foreground", "--exit-with-parent", f"--pidfile={self._pidfile}"]
        argv += ["--unix", self.socket_path] if self.socket_path else ["--port", str(self.port), "--ipaddr", self.bind]
        if self.read_only:
            argv.append("--readonly")
        if self.verbose:
            argv.append("--verbose")
        config = self.config if not self.read_only else ServeConfig(**{**self.config.__dict__, "writable": False})
        argv += ["python", plugin_path(self.tree), *config.as_params(), f"status={self._status}"]
        env = dict(os.environ, FSPROTO_SITEDIRS=os.pathsep.join(_sitedirs(self.tree)))
        # The plugin's stop thread reads the other end: "stop" from stop(), EOF if we die.
        control_r, self._control_w = os.pipe()
        argv.append(f"control_fd={control_r}")
        try:
            self.helper = HelperProcess(argv, what="nbdkit", env=env, pass_fds=(control_r,),
                                        log_path=self.log_path)
        finally:
            os.close(control_r)
        try:
            self._wait_ready()
        except BaseException:
            self._close_control()
            self.helper.stop(grace_s=5)
            self._cleanup_files()
            raise
        return self

    def _close_control(self, message: bytes = b"") -> None:
        if self._control_w is None:
            return
        try:
            if message:
                os.write(self._control_w, message)
        except BrokenPipeError:
            pass  # nbdkit is gone already
        finally:
            os.close(self._control_w)
            self._control_w = None

    def _wait_ready(self) -> None:
        assert self.helper is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while not os.path.exists(self._pidfile):
            if not self.helper.alive():
                raise self._start_error()
            if time.monotonic() > deadline:
                raise DeviceError(f"nbdkit did not start serving within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.01)
        for line in self._status_lines():
            fields = line.split("\t")
            if fields[0] == "opened":
                self.size, self.block_size = int(fields[1]), int(fields[2])

    def _status_lines(self) -> list[str]:
        try:
            with open(self._status, encoding="utf-8") as f:
                return [ln.rstrip("\n") for ln in f if ln.strip()]
        except FileNotFoundError:
            return []

    def _plugin_error(self) -> FsprotoError | None:
        """The fsproto error the plugin reported, rebuilt with its type (so exit statuses match)."""
        for line in reversed(self._status_lines()):
            fields = line.split("\t", 2)
            if fields[0] == "error" and len(fields) == 3:
                cls = getattr(errors, fields[1], None)
                if not (isinstance(cls, type) and issubclass(cls, FsprotoError)):
                    cls = DeviceError
                err = cls.__new__(cls)
                FsprotoError.__init__(err, fields[2])
                return err
        return None

    def _start_error(self) -> FsprotoError:
        found = self._plugin_error()
        if found is not None:
            return found
        assert self.helper is not None
        out = self.helper.output()
        if "Address already in use" in out:
            return DeviceBusy(f"cannot listen on {self.uri}: address already in use")
        return DeviceError(self.helper.failure() or "nbdkit failed to start")

    def failure(self) -> str | None:
        """None while nbdkit runs; else one line saying how it ended."""
        return self.helper.failure() if self.helper is not None else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for nbdkit to exit by itself (None on timeout)."""
        assert self.helper is not None
        try:
            return self.helper.proc.wait(timeout=timeout)
        except Exception:  # subprocess.TimeoutExpired
            return None

    def stop(self) -> None:
        """SIGTERM nbdkit, wait for the flush and close, reap it. Raises MediaError when the flush failed."""
        if self.helper is None:
            return
        helper, self.helper = self.helper, None
        was_running = helper.alive()
        self._close_control(b"stop\n")  # the plugin flushes and closes the device, then nbdkit ends
        try:
            helper.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        helper.stop(grace_s=5)  # reaps it; SIGTERM then SIGKILL only if it is still there
        lines = self._status_lines()
        try:
            err = None
            for line in lines:
                if line.startswith("error\t") and "shutdown" in line:
                    err = MediaError(line.split("\t", 2)[2], device=self.config.device)
            if err is not None:
                raise err
            if was_running and "closed" not in lines and lines and lines[0].startswith("opened"):
                raise MediaError(f"nbdkit ended without closing the device ({helper.failure()})",
                                 device=self.config.device)
        finally:
            helper.close_log()
            self._cleanup_files()

    def _cleanup_files(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
        if self.socket_path and not self.socket_path.startswith(self._dir):
            try:
                os.unlink(self.socket_path)  # nbdkit removes it; a killed one may not
            except FileNotFoundError:
                pass

    def __enter__(self) -> "NbdServer":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __str__(self) -> str:
        return f"NbdServer({self.config.device} at {self.uri})"

