"""Built-in workloads every format runs (8.3 upper-case names, so CMS, FAT and TinyFS all take them).

- ``basic``: create, append, overwrite, truncate down and up, rename, rename over an existing
  file (the VFS has no open handles, so "over an open file" is over one read just before), delete;
- ``many``: a directory of many files (``count``, 10,000 for the full run; in /MANY where the
  format has subdirectories), then deletes;
- ``enospc``: fill the volume until NoSpace, then delete and write again.
"""

from __future__ import annotations

from fsproto.crash.workload import Workload, WorkloadScript
from fsproto.errors import FsError, NoSpace, NotPermitted, NotSupported


def data(n: int, seed: int) -> bytes:
    return bytes((seed * 37 + i * 11) & 0xFF for i in range(n))


def _basic_setup(fs) -> None:
    for i in range(4):
        fs.create(f"/OLD{i}.DAT")
        fs.write(f"/OLD{i}.DAT", 0, data(700 * (i + 1), i))


def _basic(w: Workload) -> None:
    w.create("/NEW1.DAT")
    w.write("/NEW1.DAT", 0, data(3000, 1))
    w.fsync()
    w.append("/NEW1.DAT", data(2500, 2))
    w.write("/OLD1.DAT", 100, data(900, 3))  # overwrite across blocks
    w.fsync()
    w.truncate("/OLD2.DAT", 500)
    w.truncate("/OLD0.DAT", 1800)
    w.fsync()
    w.rename("/OLD3.DAT", "/MOVED.DAT")
    w.fs.read("/OLD1.DAT", 0, 10)
    w.rename("/NEW1.DAT", "/OLD1.DAT")  # over an existing file
    w.fsync()
    w.unlink("/OLD2.DAT")
    w.create("/LAST.DAT")
    w.write("/LAST.DAT", 0, data(1200, 4))
    w.fsync()


def _many(count: int):
    def run(w: Workload) -> None:
        top = "/MANY"  # a subdirectory where the format has them (FAT12/16's root is fixed-size)
        try:
            w.mkdir(top)
        except (NotPermitted, NotSupported):  # a flat format (mkdir: EPERM)
            top = ""
        for i in range(count):
            w.create(f"{top}/M{i:05}.DAT")
            if i % 7 == 0:
                w.write(f"{top}/M{i:05}.DAT", 0, data(100, i))
        w.fsync()
        for i in range(0, count, 3):
            w.unlink(f"{top}/M{i:05}.DAT")
        w.fsync()

    return run


def _enospc(w: Workload) -> None:
    i = 0
    try:
        while i < 1000:
            w.create(f"/FILL{i:04}.DAT")
            w.write(f"/FILL{i:04}.DAT", 0, data(16384, i))
            i += 1
    except (NoSpace, FsError):
        pass
    w.fsync()
    if i:
        w.unlink(f"/FILL{0:04}.DAT")
        w.fsync()
        w.create("/AFTER.DAT")
        w.write("/AFTER.DAT", 0, data(4000, 9))
        w.fsync()


def builtin(name: str, *, many: int = 10_000) -> WorkloadScript:
    """Raises KeyError for an unknown name (the CLI turns it into a usage error)."""
    if name == "basic":
        return WorkloadScript("basic", _basic, _basic_setup)
    if name == "many":
        return WorkloadScript("many", _many(many), None, device_bytes=16 << 20)
    if name == "enospc":
        return WorkloadScript("enospc", _enospc, None, device_bytes=256 << 10)
    raise KeyError(name)


BUILTINS = ("basic", "many", "enospc")
