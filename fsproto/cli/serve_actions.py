"""The action behind ``fsproto serve``: run nbdkit for one device until a signal, then stop it cleanly.

Parsing lives in :mod:`fsproto.cli.serve_cmds`; the server itself in :mod:`fsproto.serve.server`.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from fsproto.cli.device_actions import human
from fsproto.errors import DeviceError
from fsproto.serve.export import ServeConfig
from fsproto.serve.server import NbdServer

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def serve(device: str, *, socket_path: str | None, port: int | None, bind: str, read_only: bool,
          overlay: str | None, fault: str | None, trace: str | None, force: bool, export: str,
          verbose: bool = False, log_path: str | None = None) -> int:
    """Serve *device* until SIGINT/SIGTERM/SIGHUP; returns 0 after a clean, flushed stop.

    Raises the device's opening errors, DeviceBusy (port taken, device locked), DeviceError
    (nbdkit died while serving), MediaError (the flush at shutdown failed).
    """
    config = ServeConfig(device=device, writable=not read_only, force=force, overlay=overlay, fault=fault,
                         trace=trace, export=export)
    server = NbdServer(config, socket_path=socket_path, port=port, bind=bind, read_only=read_only,
                       verbose=verbose, log_path=log_path)
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        stop.set()

    main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, on_signal) for s in _STOP_SIGNALS} if main_thread else {}
    try:
        server.start()
        try:
            mode = "read-only" if server.read_only else "read-write"
            sys.stdout.write(f"serving {device} ({human(server.size)}, {mode}) at {server.uri}\n")
            sys.stdout.flush()
            if sys.stderr.isatty():
                sys.stderr.write("fsproto: Ctrl-C stops the server (after flushing the device)\n")
            while not stop.is_set():
                if server.wait(timeout=0.2) is not None:
                    raise DeviceError(f"the NBD server stopped: {server.failure()}", device=device)
        finally:
            server.stop()  # flushes and closes the device; raises if that failed
        name = signal.Signals(received[0]).name if received else "stop"
        sys.stdout.write(f"stopped ({name}): {device} flushed and closed\n")
        sys.stdout.flush()
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
