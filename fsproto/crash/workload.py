"""The workload API: a format-agnostic script over :class:`fsproto.vfs.Filesystem`.

A workload file defines ``run(w)`` (and optionally ``setup(fs)``, run and flushed before
recording starts, and ``MKFS_OPTIONS``). ``w`` is a :class:`Workload`: it forwards
create/write/truncate/rename/unlink/mkdir to the filesystem and keeps, per path, every version
of its contents with the span of device writes that produced it. ``w.fsync()`` flushes the
filesystem; every version completed before a flush is durable from then on.

The assertions a crash state is held to (see :meth:`Workload.acceptable`): a file's durable
version, or any later version whose operation had started; absent counts as a version.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Callable

from fsproto.crash.record import RecordingDevice
from fsproto.errors import UsageError
from fsproto.vfs import Filesystem


@dataclass(frozen=True)
class Version:
    content: bytes | None  # None: the path does not exist
    start: int  # writes issued before the operation began
    end: int  # writes issued when it completed


class Workload:
    """Drives *fs* (over *dev*, the recording device) and models what each path must hold."""

    def __init__(self, fs: Filesystem, dev: RecordingDevice) -> None:
        self.fs = fs
        self.dev = dev
        self.history: dict[str, list[Version]] = {}

    # -- the model --------------------------------------------------------------------------
    def track(self, path: str) -> None:
        """Start modelling *path* with what it holds now (before any recorded write)."""
        if path not in self.history:
            self.history[path] = [Version(self._contents(path), 0, 0)]

    def _contents(self, path: str) -> bytes | None:
        if not self.fs.exists(path):
            return None
        size = self.fs.stat(path).size
        return self.fs.read(path, 0, size)

    def _op(self, paths: tuple[str, ...], action: Callable[[], Any]) -> Any:
        for p in paths:
            self.track(p)
        start = len(self.dev.writes)
        try:
            return action()
        finally:  # a failed op (ENOSPC) may still have changed things: record what is there now
            end = len(self.dev.writes)
            for p in paths:
                now = self._contents(p)
                if now != self.history[p][-1].content:
                    self.history[p].append(Version(now, start, end))

    # -- operations -------------------------------------------------------------------------
    def create(self, path: str) -> None:
        self._op((path,), lambda: self.fs.create(path))

    def write(self, path: str, offset: int, data: bytes) -> None:
        self._op((path,), lambda: self.fs.write(path, offset, data))

    def append(self, path: str, data: bytes) -> None:
        self._op((path,), lambda: self.fs.write(path, self.fs.stat(path).size, data))

    def truncate(self, path: str, size: int) -> None:
        self._op((path,), lambda: self.fs.truncate(path, size))

    def rename(self, old: str, new: str) -> None:
        self._op((old, new), lambda: self.fs.rename(old, new))

    def unlink(self, path: str) -> None:
        self._op((path,), lambda: self.fs.unlink(path))

    def mkdir(self, path: str) -> None:
        self.fs.mkdir(path)

    def fsync(self) -> None:
        """Make everything so far durable (the VFS flush is a whole-filesystem barrier)."""
        self.fs.flush()

    # -- the assertions -------------------------------------------------------------------------
    def acceptable(self, path: str, durable_writes: int, present_writes: int) -> list[bytes | None]:
        """Contents *path* may hold in a state that has every write before *durable_writes*
        (a flush point) and some write at or past it up to *present_writes*."""
        versions = self.history[path]
        durable = 0
        for i, v in enumerate(versions):
            if v.end <= durable_writes:
                durable = i
        out = [versions[durable].content]
        out += [v.content for v in versions[durable + 1 :] if v.start < present_writes or v.start == v.end <= present_writes]
        return out


@dataclass
class WorkloadScript:
    name: str
    run: Callable[[Workload], None]
    setup: Callable[[Filesystem], None] | None = None
    mkfs_options: dict[str, Any] | None = None
    device_bytes: int = 1 << 20


def load_workload_file(path: str) -> WorkloadScript:
    """Import *path* (a Python file with ``run(w)``). Raises UsageError."""
    if not os.path.isfile(path):
        raise UsageError(f"no workload file {path}")
    spec = importlib.util.spec_from_file_location("fsproto_workload", path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load workload {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not callable(getattr(mod, "run", None)):
        raise UsageError(f"workload {path} defines no run(w)")
    return WorkloadScript(os.path.basename(path), mod.run, getattr(mod, "setup", None),
                          getattr(mod, "MKFS_OPTIONS", None), int(getattr(mod, "DEVICE_BYTES", 1 << 20)))
