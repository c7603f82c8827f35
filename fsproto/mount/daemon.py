"""Running a mount: set it up, serve it in the foreground or a forked daemon, take it down.

Life of ``fsproto mount DEV MNT`` (:func:`mount_device`):

1. open the device, which flocks it (exclusive read-write, shared read-only: the adapter
   caches attributes because the mount is the only writer; see fsproto.blockdev.lock), detect the format, open the filesystem
   and mount (``pyfuse3.init``) in the calling process, so a corrupt image, a busy image or a
   bad mount point is one error line and a non-zero exit status;
2. unless ``foreground``, fork: the child serves, the parent waits until the child holds the
   mount's state lock, then returns 0;
3. the server runs the trio main loop until the mount is unmounted (``fsproto umount``,
   ``fusermount3 -u``) or it gets SIGINT/SIGTERM/SIGHUP; then it removes the mount,
   ``Filesystem.close()`` (flush) and closes the device -- in that order -- and only then
   releases the state lock. ``fsproto umount`` waits for that lock, so when it returns the
   device holds everything that was written.

The state lock is ``<state dir>/<quoted mount point>.lock`` holding the daemon's pid, under
``/run/fsproto`` (or the temp dir when that is not writable).
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from typing import Any, Callable

import pyfuse3
import trio

from fsproto.errors import DeviceBusy, MountError, UsageError
from fsproto.mount.adapter import FsprotoOperations
from fsproto.mount.options import MountOptions
from fsproto.vfs import Filesystem

log = logging.getLogger("fsproto.mount")

LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
UMOUNT_WAIT = 60.0  # seconds `fsproto umount` waits for the daemon to flush and exit


# -- state lock -------------------------------------------------------------------------------
def state_dir() -> str:
    for candidate in ("/run/fsproto", os.path.join(tempfile.gettempdir(), f"fsproto-{os.getuid()}")):
        try:
            os.makedirs(candidate, mode=0o700, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    raise MountError("no writable directory for mount state (/run/fsproto or the temp dir)")


def lock_path(mountpoint: str) -> str:
    return os.path.join(state_dir(), urllib.parse.quote(os.path.abspath(mountpoint), safe="") + ".lock")


def _take_lock(mountpoint: str) -> int:
    """Open and exclusively lock the state file of *mountpoint*; write our pid. Raises DeviceBusy."""
    path = lock_path(mountpoint)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DeviceBusy("another fsproto daemon serves this mount point", device=mountpoint) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _release_lock(mountpoint: str, fd: int) -> None:
    """Remove the state file (still holding its lock, so no one sees it half-gone) and unlock."""
    try:
        os.unlink(lock_path(mountpoint))
    except OSError:
        pass
    os.close(fd)


# -- logging ----------------------------------------------------------------------------------
def default_log_file() -> str:
    if os.access("/var/log", os.W_OK):
        return "/var/log/fsproto-mount.log"
    return os.path.join(tempfile.gettempdir(), f"fsproto-mount-{os.getuid()}.log")


def make_log_handler(target: str | None) -> logging.Handler:
    """A handler for *target*: a file path, ``syslog``, or ``-``/None for stderr.

    Opened before mounting so a bad target is reported as one line. Raises UsageError.
    """
    if target == "syslog":
        try:
            handler: logging.Handler = logging.handlers.SysLogHandler(address="/dev/log")
        except OSError as e:
            raise UsageError(f"cannot log to syslog (/dev/log): {e.strerror}") from None
        handler.setFormatter(logging.Formatter("fsproto-mount[%(process)d]: %(levelname)s %(name)s: %(message)s"))
        return handler
    if target in (None, "-"):
        handler = logging.StreamHandler(sys.stderr)
    else:
        try:
            handler = logging.FileHandler(target)
        except OSError as e:
            raise UsageError(f"cannot open log file {target}: {e.strerror}") from None
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler


def install_log_handler(handler: logging.Handler, *, debug: bool) -> None:
    """Make *handler* the only destination of fsproto's log (in the serving process only)."""
    root = logging.getLogger("fsproto")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False


def setup_logging(target: str | None, *, debug: bool) -> None:
    """Send fsproto's log to *target* (see :func:`make_log_handler`). Raises UsageError."""
    install_log_handler(make_log_handler(target), debug=debug)


# -- mounting ----------------------------------------------------------------------------------
def check_mountpoint(mountpoint: str) -> str:
    """The absolute mount point. Raises UsageError when it is not an empty-able directory."""
    mp = os.path.abspath(mountpoint)
    if not os.path.isdir(mp):
        raise UsageError(f"mount point {mp} is not a directory")
    if os.path.ismount(mp):
        raise UsageError(f"{mp} is already a mount point")
    return mp


def _kernel_mount(ops: Any, mountpoint: str, options: MountOptions) -> None:
    try:
        pyfuse3.init(ops, mountpoint, options.libfuse_options())
    except RuntimeError as e:  # libfuse prints the reason on stderr and returns an error
        raise MountError(f"cannot mount ({e}); {_mount_hint(options)}", device=mountpoint) from None


def _mount_hint(options: MountOptions) -> str:
    """What most likely went wrong, for the one error line (fusermount3's own reason is above it)."""
    if os.geteuid() != 0 and options.allow_other and not _fuse_conf_allows_other():
        return "-o allow_other needs a line user_allow_other in /etc/fuse.conf for a non-root user"
    return "is /dev/fuse available?"


def _fuse_conf_allows_other(path: str = "/etc/fuse.conf") -> bool:
    try:
        with open(path) as f:
            return any(line.strip() == "user_allow_other" for line in f)
    except OSError:
        return False


def _set_read_ahead(mountpoint: str, kb: int) -> None:
    """Larger kernel read-ahead means fewer, bigger READ requests (spec: round trips dominate)."""
    try:
        dev = os.stat(mountpoint).st_dev
        with open(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb", "w") as f:
            f.write(str(kb))
    except OSError as e:
        log.warning("cannot set read_ahead_kb=%d: %s", kb, e)


def _syncfs(mountpoint: str) -> None:
    """syncfs(2) with the GIL released (pyfuse3.syncfs keeps it, which would deadlock here)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.syncfs(fd) != 0:
            log.error("syncfs %s: %s", mountpoint, os.strerror(ctypes.get_errno()))
    finally:
        os.close(fd)


async def _main_loop(ops: FsprotoOperations, options: MountOptions, mountpoint: str) -> None:
    async with trio.open_nursery() as nursery:

        async def on_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
                async for signum in signals:
                    log.info("%s: unmounting %s", signal.Signals(signum).name, mountpoint)
                    if ops.writeback:
                        # Dirty pages live in the kernel: have it write them to us while the
                        # loop still serves (from a thread: syncfs blocks until we answer).
                        await trio.to_thread.run_sync(_syncfs, mountpoint)
                    pyfuse3.terminate()
                    return

        nursery.start_soon(on_signals)
        if options.read_ahead_kb:
            # stat() of the mount point needs the loop running: do it from a thread.
            nursery.start_soon(trio.to_thread.run_sync, _set_read_ahead, mountpoint, options.read_ahead_kb)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def _serve_mounted(ops: Any, fs: Filesystem, mountpoint: str, options: MountOptions, device: Any) -> None:
    """Run the main loop of an already mounted *ops*, then take everything down in order."""
    failed: BaseException | None = None
    try:
        trio.run(_main_loop, ops, options, mountpoint)
    except BaseException as e:  # noqa: BLE001 - still unmount and flush, then re-raise
        failed = e
        log.exception("main loop ended with an error")
    finally:
        ops.shutdown()
        # Unmount before closing the format: after this no request can reach a closed fs.
        pyfuse3.close(unmount=True)
        try:
            fs.close()
        except Exception:  # logged; the device must still be closed
            log.exception("flushing the filesystem failed")
            failed = failed or MountError("flushing the filesystem failed", device=mountpoint)
        if device is not None:
            device.close()
        log.info("unmounted %s", mountpoint)
    if failed is not None:
        raise failed


def serve(
    fs: Filesystem,
    mountpoint: str,
    options: MountOptions,
    *,
    device: Any = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Mount *fs* and serve it in this process until unmounted or signalled (foreground).

    Raises UsageError (bad mount point), MountError, DeviceBusy (already served).
    """
    mp = check_mountpoint(mountpoint)
    lock_fd = _take_lock(mp)
    try:
        ops = FsprotoOperations(fs, options)
        _kernel_mount(ops, mp, options)
        log.info("mounted %s on %s (%s)", options.fsname, mp, ", ".join(sorted(options.libfuse_options())))
        if ready is not None:
            ready()
        _serve_mounted(ops, fs, mp, options, device)
    finally:
        _release_lock(mp, lock_fd)


def mount(fs: Filesystem, mountpoint: str, options: MountOptions | None = None, **kwargs: Any) -> None:
    """Mount *fs* at *mountpoint* and serve in this process until unmounted or SIGINT/SIGTERM.

    On the way out the mount is removed and ``fs.close()`` is called (all data flushed).
    Keyword arguments go to :func:`serve` (``device`` to close last, ``ready`` called once the
    mount exists). Raises MountError, UsageError.
    """
    serve(fs, mountpoint, options or MountOptions(), **kwargs)


def mount_device(
    device_spec: str,
    mountpoint: str,
    *,
    format_name: str = "auto",
    format_options: dict[str, Any] | None = None,
    options: MountOptions | None = None,
    foreground: bool = False,
    log_target: str | None = None,
    debug: bool = False,
) -> int:
    """What ``fsproto mount`` does; returns the exit status (0). See the module docstring.

    Raises UsageError, DeviceError, UnknownFormat, FormatError, MountError.
    """
    from fsproto import formats
    from fsproto.blockdev.open import is_path_spec
    from fsproto.rawdev import open_device

    options = options or MountOptions()
    mp = check_mountpoint(mountpoint)
    if not foreground and log_target is None:
        log_target = default_log_file()
    handler = make_log_handler(log_target)
    if foreground:
        install_log_handler(handler, debug=debug)
    dev = open_device(device_spec, writable=not options.read_only)
    if not foreground and not dev.survives_fork:
        dev.close()
        raise UsageError(f"{device_spec}: a user-space driver's device cannot be handed to a forked "
                         "daemon; mount it with --foreground")
    fs: Filesystem | None = None
    try:
        fmt = formats.detect(dev, format_name)
        fs = fmt.open(dev, **(format_options or {}))
        options = options.with_(
            fsname=options.fsname or (os.path.abspath(device_spec) if is_path_spec(device_spec) else device_spec),
            subtype=options.subtype or fmt.name,
            read_only=options.read_only or fs.read_only,
        )
        ops = FsprotoOperations(fs, options)
        lock_fd = _take_lock(mp)
        try:
            _kernel_mount(ops, mp, options)
        except BaseException:
            os.close(lock_fd)
            raise
    except BaseException:
        if fs is not None:
            fs.close()
        dev.close()
        if not foreground:
            handler.close()
        raise
    if foreground:
        log.info("mounted %s (%s) on %s", options.fsname, fmt.name, mp)
        try:
            _serve_mounted(ops, fs, mp, options, dev)
        finally:
            _release_lock(mp, lock_fd)
        return 0
    return _daemonize(ops, fs, mp, options, dev, lock_fd, handler, debug, fmt.name)


def _daemonize(
    ops: Any,
    fs: Filesystem,
    mp: str,
    options: MountOptions,
    dev: Any,
    lock_fd: int,
    handler: logging.Handler,
    debug: bool,
    format_name: str,
) -> int:
    """Fork; the child serves. The parent returns 0 once the child runs (holding the lock)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: detach from the terminal and serve until unmounted
        status = 0
        try:
            os.close(read_end)
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.chdir("/")
            # Only the daemon logs to the file: the caller (maybe a test runner calling
            # fsproto.cli.cli in-process) keeps its own logging configuration.
            install_log_handler(handler, debug=debug)
            log.info("mounted %s (%s) on %s", options.fsname, format_name, mp)
            # flock belongs to the open file, which parent and child share: re-stamp our pid.
            os.ftruncate(lock_fd, 0)
            os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
            os.write(write_end, b"1")
            os.close(write_end)
            _serve_mounted(ops, fs, mp, options, dev)
            _release_lock(mp, lock_fd)
        except BaseException:  # noqa: BLE001 - the child must never return into the caller
            log.exception("mount daemon failed")
            status = 1
        finally:
            logging.shutdown()
            os._exit(status)
    os.close(write_end)
    handler.close()
    ok = os.read(read_end, 1) == b"1"
    os.close(read_end)
    # The parent's copies of the lock, /dev/fuse and device descriptors go with it; it must
    # not close the filesystem (that would write from two processes).
    os.close(lock_fd)
    if not ok:
        raise MountError("the mount daemon died while starting; see the log", device=mp)
    return 0


# -- unmounting --------------------------------------------------------------------------------
def _is_mount(mp: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mp for line in f)


def umount(mountpoint: str, *, lazy: bool = False, timeout: float = UMOUNT_WAIT) -> None:
    """Unmount *mountpoint* and wait until its daemon has flushed and closed the device.

    With *lazy* the mount is detached at once and the daemon finishes (flushes, closes the
    device) when the last open file on it is closed; this returns without waiting.

    Raises UsageError (not mounted), DeviceBusy (in use), MountError.
    """
    mp = os.path.abspath(mountpoint)
    # /proc/self/mountinfo instead of os.path.ismount: a dead daemon's mount fails stat().
    if not _is_mount(mp):
        raise UsageError(f"{mp} is not mounted")
    cmd = ["fusermount3", "-u", *(["-z"] if lazy else []), mp]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise MountError("fusermount3 not found (install the fuse3 package)", device=mp) from None
    except subprocess.TimeoutExpired:
        raise MountError("fusermount3 did not finish", device=mp) from None
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        if "busy" in reason.lower():
            raise DeviceBusy(f"mount point is in use ({reason}); close the files or use --lazy", device=mp)
        raise MountError(f"fusermount3 -u: {reason}", device=mp)
    if not lazy:  # a lazy unmount ends the daemon only when the last user closes its files
        _wait_for_daemon(mp, timeout)


def _wait_for_daemon(mp: str, timeout: float) -> None:
    """Block until no daemon holds *mp*'s state lock (it has flushed and closed the device)."""
    path = lock_path(mp)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # not one of ours (or started before the lock existed)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise MountError(f"the daemon did not exit within {timeout:.0f} s", device=mp) from None
                time.sleep(0.05)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    finally:
        os.close(fd)


__all__ = ["mount", "serve", "mount_device", "umount", "setup_logging", "make_log_handler", "install_log_handler"]
