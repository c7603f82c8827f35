"""The nbdkit Python plugin script behind ``fsproto serve`` (``nbdkit python .../plugin.py device=...``).

It runs inside nbdkit, under the Python nbdkit-plugin-python was built for (Debian's system
python3), not the venv's interpreter: so before importing fsproto it puts the directories named in
``FSPROTO_SITEDIRS`` (the venv's site-packages, fsproto's source tree) at the *front* of
``sys.path``, through :func:`site.addsitedir` so the editable install's ``.pth`` runs. fsproto's
dependencies are pure Python or cp311 wheels, which the system 3.11 loads.

Callbacks (nbdkit-python-plugin(3)): the device opens in ``get_ready`` (once, before nbdkit
binds its socket; an error there is written to the ``status`` file for ``fsproto serve`` to
report in one line) and closes, flushing, in ``cleanup`` (nbdkit's clean shutdown on SIGTERM).
All connections share that one device, and nbdkit runs one request at a time
(SERIALIZE_ALL_REQUESTS: the block devices are not thread-safe, and the GIL would serialise
Python anyway). So a flush on any connection makes every connection's completed writes durable,
which is exactly NBD's multi-conn promise: it is advertised for every device.

Stopping: ``fsproto serve`` holds the write end of a pipe whose read end is ``control_fd``. A
thread started in ``after_fork`` waits on it; ``stop`` (or EOF: ``fsproto serve`` died) makes it
flush and close the device under the export's lock, report ``closed`` and ask nbdkit to shut
down. nbdkit 1.32 then still waits for idle clients to hang up (a connection blocked in read()
never sees the quit), so once the device is safely closed the thread ends nbdkit itself after
a grace period: a stop never hangs on a client that keeps its connection open.

Export names: only the configured one (default ``""``) opens; any other fails with ENOENT, which
clients report as "no such export".
"""

from __future__ import annotations

import builtins
import errno
import os
import shutil
import site
import sys
import threading
import time

API_VERSION = 2


def _put_sitedirs_first() -> None:
    before = list(sys.path)
    for d in os.environ.get("FSPROTO_SITEDIRS", "").split(os.pathsep):
        if d and os.path.isdir(d):
            site.addsitedir(d)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + before


_put_sitedirs_first()

import nbdkit  # noqa: E402 - provided by nbdkit itself, only inside the server

_params: dict[str, str] = {}
_export = None  # the fsproto.serve.export.Export, once get_ready ran


def _status(line: str) -> None:
    path = _params.get("status")
    if path:
        with builtins.open(path, "a", encoding="utf-8") as f:  # open() here is the callback
            f.write(line.replace("\n", " ") + "\n")


def _fail(e: BaseException) -> None:
    """Hand *e*'s errno to nbdkit (the client sees it) before the exception propagates."""
    from fsproto.errors import errno_for

    nbdkit.set_error(errno_for(e))


def config(key: str, value: str) -> None:
    _params[key] = value


def config_complete() -> None:
    if "device" not in _params:
        raise RuntimeError("fsproto plugin: device= is required")


def thread_model() -> int:
    return nbdkit.THREAD_MODEL_SERIALIZE_ALL_REQUESTS


def get_ready() -> None:
    global _export
    try:
        from fsproto.serve.export import ServeConfig, open_export

        _export = open_export(ServeConfig.from_params(_params))
    except BaseException as e:
        _status(f"error\t{type(e).__name__}\t{e}")
        raise
    _status(f"opened\t{_export.size}\t{_export.block_size}\t{int(_export.read_only)}")


EXIT_GRACE_S = 1.0  # for nbdkit's own shutdown once the device is closed


def _close_export() -> None:
    """Flush and close the device once (the stop thread and cleanup may both get here)."""
    if _export is None:
        return
    with _export.lock:
        if _export.dev.closed:
            return
        try:
            _export.close()
        except BaseException as e:
            _status(f"error\t{type(e).__name__}\tflush at shutdown failed: {e}")
            raise
    _status("closed")


def _watch_control(fd: int) -> None:
    with builtins.open(fd, "rb", buffering=0) as control:
        orphaned = control.readline() == b""  # "stop", or EOF when fsproto serve is gone
    try:
        _close_export()
    finally:
        if orphaned and _params.get("status"):
            # nobody is left to remove the private directory (socket, pidfile, status)
            shutil.rmtree(os.path.dirname(_params["status"]), ignore_errors=True)
        nbdkit.shutdown()
        time.sleep(EXIT_GRACE_S)
        os._exit(0)  # still here: an idle client holds nbdkit; the device is closed, nothing is lost


def after_fork() -> None:
    fd = _params.get("control_fd")
    if fd is not None:
        threading.Thread(target=_watch_control, args=(int(fd),), name="fsproto-stop", daemon=True).start()


def cleanup() -> None:
    _close_export()


def default_export(readonly: bool, is_tls: bool) -> str:
    return _params.get("export", "")


def list_exports(readonly: bool, is_tls: bool) -> list[tuple[str, str]]:
    return [(_params.get("export", ""), f"fsproto {_params.get('device', '')}")]


def open(readonly: bool) -> object:  # noqa: A001 - nbdkit looks the callback up by this name
    want = _params.get("export", "")
    if nbdkit.export_name() != want:
        nbdkit.set_error(errno.ENOENT)
        raise LookupError(f"no export named {nbdkit.export_name()!r} (this server has {want!r})")
    return _export


def export_description(h: object) -> str:
    return _export.description  # type: ignore[union-attr]


def get_size(h: object) -> int:
    return _export.size  # type: ignore[union-attr]


def block_size(h: object) -> tuple[int, int, int]:
    # Any byte range works (Export splices partial blocks); the device's block is the preferred size.
    from fsproto.serve.export import MAX_NBD_REQUEST

    return 1, max(4096, _export.block_size), MAX_NBD_REQUEST  # type: ignore[union-attr]


def is_rotational(h: object) -> bool:
    return False


def can_write(h: object) -> bool:
    return not _export.read_only  # type: ignore[union-attr]


def can_flush(h: object) -> bool:
    return True


def can_fua(h: object) -> int:
    return nbdkit.FUA_NATIVE


def can_trim(h: object) -> bool:
    return not _export.read_only  # type: ignore[union-attr]


def can_zero(h: object) -> bool:
    return not _export.read_only  # type: ignore[union-attr]


def can_fast_zero(h: object) -> bool:
    return _export.can_fast_zero  # type: ignore[union-attr]


def can_multi_conn(h: object) -> bool:
    return True  # see the module docstring


def can_cache(h: object) -> int:
    return nbdkit.CACHE_NONE


def can_extents(h: object) -> bool:
    return False


def pread(h, buf, offset, flags):  # type: ignore[no-untyped-def]
    try:
        with h.lock:
            h.pread_into(buf, offset)
    except BaseException as e:
        _fail(e)
        raise


def pwrite(h, buf, offset, flags):  # type: ignore[no-untyped-def]
    try:
        with h.lock:
            h.pwrite(buf, offset, fua=bool(flags & nbdkit.FLAG_FUA))
    except BaseException as e:
        _fail(e)
        raise


def flush(h, flags):  # type: ignore[no-untyped-def]
    try:
        with h.lock:
            h.flush()
    except BaseException as e:
        _fail(e)
        raise


def zero(h, count, offset, flags):  # type: ignore[no-untyped-def]
    try:
        with h.lock:
            h.zero(count, offset, may_trim=bool(flags & nbdkit.FLAG_MAY_TRIM),
                   fast=bool(flags & nbdkit.FLAG_FAST_ZERO), fua=bool(flags & nbdkit.FLAG_FUA))
    except BaseException as e:
        _fail(e)  # NotSupported is EOPNOTSUPP: the client's fast zero falls back, as the spec says
        raise


def trim(h, count, offset, flags):  # type: ignore[no-untyped-def]
    try:
        with h.lock:
            h.trim(count, offset, fua=bool(flags & nbdkit.FLAG_FUA))
    except BaseException as e:
        _fail(e)
        raise
