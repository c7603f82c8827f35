"""Prepare the reference guest once into a cache directory; fast when already prepared.

The cache holds ``vmlinuz``, ``initrd.gz`` (built here in Python), ``root/`` (the unpacked
packages) and ``stamp.json``. The stamp records the recipe version, the package versions and
the initramfs hash; a cache whose stamp matches this recipe and whose files exist is used as
is, without touching apt (``prepare()`` then takes milliseconds plus one ``qemu --version``).

Limits: Debian hosts only (apt, dpkg); installing needs root. Everything comes from Debian's
package registry; nothing is downloaded from anywhere else.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fsproto.errors import HarnessSetupError
from fsproto.testing.cmsref import apt
from fsproto.testing.cmsref.elf import ElfFile
from fsproto.testing.cmsref.initramfs import Archive
from fsproto.testing.cmsref.scripts import INIT, LIB

RECIPE = 3  # bump when what goes into the cache changes
# Guest packages besides the kernel (resolved at prepare time); see cms-reference.md.
PACKAGES = [
    "busybox-static", "s390-tools", "libfuse2", "libc6", "libcrypt1", "attr", "libattr1", "libfaketime",
]
MODULES = ["virtio_blk", "fuse", "netfs", "fscache", "9pnet", "9pnet_virtio", "9p"]
BINARIES = ["usr/bin/cmsfs-fuse", "usr/bin/getfattr", "usr/bin/setfattr"]
PRELOADS = ["usr/lib/s390x-linux-gnu/faketime/libfaketime.so.1"]
LIBDIRS = ["lib/s390x-linux-gnu", "usr/lib/s390x-linux-gnu", "lib", "usr/lib"]
GCONV = "usr/lib/s390x-linux-gnu/gconv"
GCONV_FILES = ["IBM1047.so", "ISO8859-1.so", "gconv-modules", "gconv-modules.cache"]
EXTRA_FILES = ["etc/cmsfs-fuse/filetypes.conf"]

Step = Callable[[str], None]


def default_cache() -> Path:
    """``$FSPROTO_CMSREF_CACHE``, else ``~/.cache/fsproto/cmsref``."""
    env = os.environ.get("FSPROTO_CMSREF_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "fsproto" / "cmsref"


@dataclass(frozen=True)
class Prepared:
    """What a prepared cache provides to :func:`fsproto.testing.cmsref.run`."""

    cache: Path
    kernel: Path
    initrd: Path
    qemu: str
    stamp: dict

    @property
    def kernel_version(self) -> str:
        return str(self.stamp.get("kernel_version", "?"))


def _scripts_sha() -> str:
    """Changing the guest's scripts changes the initramfs: they are part of the stamp."""
    return hashlib.sha256((INIT + LIB).encode()).hexdigest()


def load(cache: Path | None = None) -> Prepared:
    """The prepared cache, without preparing anything.

    Raises HarnessSetupError when the cache is missing, stale, or QEMU is not usable.
    """
    cache = Path(cache) if cache else default_cache()
    stamp_path = cache / "stamp.json"
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        raise HarnessSetupError(f"{cache} is not prepared: run `tools/cmsref prepare`") from None
    if stamp.get("recipe") != RECIPE or stamp.get("scripts_sha256") != _scripts_sha():
        raise HarnessSetupError(f"{cache} was prepared by another recipe: run `tools/cmsref prepare`")
    kernel, initrd = cache / "vmlinuz", cache / "initrd.gz"
    if not (kernel.is_file() and initrd.is_file()):
        raise HarnessSetupError(f"{cache} lacks vmlinuz or initrd.gz: run `tools/cmsref prepare`")
    if hashlib.sha256(initrd.read_bytes()).hexdigest() != stamp.get("initrd_sha256"):
        raise HarnessSetupError(f"{initrd} does not match its stamp: run `tools/cmsref prepare`")
    version = apt.qemu_version()
    if version is None or version < apt.QEMU_MIN:
        raise HarnessSetupError(f"{apt.QEMU} >= 8.1 is not installed: run `tools/cmsref prepare`")
    return Prepared(cache, kernel, initrd, apt.QEMU, stamp)


def prepare(cache: Path | None = None, *, force: bool = False, step: Step | None = None) -> Prepared:
    """Make the reference runnable: QEMU on the host, the guest's kernel and initramfs cached.

    Idempotent; does nothing but checks when the cache is current (unless *force*).
    Raises HarnessSetupError with one line (a missing package, an apt failure, not root...).
    """
    cache = Path(cache) if cache else default_cache()
    say = step or (lambda _msg: None)
    if not force:
        try:
            return load(cache)
        except HarnessSetupError:
            pass
    say(f"host: {apt.QEMU} >= 8.1")
    apt.ensure_qemu()
    if not force and _rebuild_initramfs(cache):
        say("initramfs: rebuilt from the unpacked packages")
        return load(cache)
    say("apt: s390x architecture")
    apt.ensure_s390x_arch()
    kernel_pkg = apt.kernel_package()
    packages = [kernel_pkg] + PACKAGES
    say(f"download: {len(packages)} s390x packages")
    cache.mkdir(parents=True, exist_ok=True)
    debs = apt.download(packages, cache / "debs")
    root = cache / "root"
    if root.exists():
        shutil.rmtree(root)
    say("unpack: dpkg-deb -x")
    versions = apt.unpack(debs, root)
    say("initramfs: modules, libraries, busybox, cmsfs-fuse")
    kernel_version, archive = build_archive(root)
    shutil.copyfile(root / "boot" / f"vmlinuz-{kernel_version}", cache / "vmlinuz")
    _write(cache, archive, {"kernel_version": kernel_version, "packages": versions})
    shutil.rmtree(cache / "debs", ignore_errors=True)  # the unpacked tree is what is used
    return load(cache)


def _write(cache: Path, archive: Archive, facts: dict) -> None:
    """Write the initramfs, then the stamp (last: a cut in between leaves no valid stamp)."""
    initrd = cache / "initrd.gz"
    archive.write_gz(initrd)
    stamp = {
        **facts,
        "recipe": RECIPE,
        "scripts_sha256": _scripts_sha(),
        "qemu": ".".join(map(str, apt.qemu_version() or (0, 0))),
        "initrd_sha256": hashlib.sha256(initrd.read_bytes()).hexdigest(),
    }
    tmp = cache / "stamp.json.tmp"
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    tmp.replace(cache / "stamp.json")


def _rebuild_initramfs(cache: Path) -> bool:
    """Only the guest scripts changed: rebuild the initramfs from the unpacked tree; True if done."""
    try:
        old = json.loads((cache / "stamp.json").read_text())
    except (OSError, ValueError):
        return False
    if old.get("recipe") != RECIPE or not (cache / "root").is_dir() or not (cache / "vmlinuz").is_file():
        return False
    kernel_version, archive = build_archive(cache / "root")
    if kernel_version != old.get("kernel_version"):
        return False
    _write(cache, archive, {"kernel_version": kernel_version, "packages": old.get("packages", {})})
    return True


def _modules(root: Path) -> tuple[str, list[str], dict[str, list[str]]]:
    """(kernel version, modules in load order as paths under lib/modules/VER, dep lines)."""
    versions = sorted(p.name for p in (root / "lib" / "modules").glob("*-s390x"))
    if len(versions) != 1:
        raise HarnessSetupError(f"expected one s390x kernel in {root}/lib/modules, found {versions}")
    ver = versions[0]
    base = root / "lib" / "modules" / ver
    by_name = {p.stem.replace("-", "_"): p for p in (base / "kernel").rglob("*.ko")}
    order: list[str] = []
    deps: dict[str, list[str]] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:
            raise HarnessSetupError(f"kernel module dependency loop: {' -> '.join(chain + (name,))}")
        path = by_name.get(name)
        if path is None:
            raise HarnessSetupError(f"kernel {ver} has no module {name} (needed for the guest)")
        needs = [d.replace("-", "_") for d in ElfFile(path).modinfo().get("depends", "").split(",") if d]
        for d in needs:
            visit(d, chain + (name,))
        deps[name] = needs
        order.append(name)

    for m in MODULES:
        visit(m, ())
    rel = [str(by_name[n].relative_to(base)) for n in order]
    dep_lines = {str(by_name[n].relative_to(base)): [str(by_name[d].relative_to(base)) for d in deps[n]] for n in order}
    return ver, rel, dep_lines


def _find_lib(root: Path, soname: str) -> str:
    for d in LIBDIRS:
        p = root / d / soname
        if p.exists():
            return f"{d}/{soname}"
    raise HarnessSetupError(f"no downloaded package provides {soname} (needed in the guest); add it to PACKAGES")


def build_archive(root: Path) -> tuple[str, Archive]:
    """The guest's initramfs from the unpacked tree *root*. Raises HarnessSetupError."""
    ver, modules, dep_lines = _modules(root)
    a = Archive()
    for d in ("proc", "sys", "dev", "tmp", "host", "mnt", "root", "bin", "sbin", "usr/bin", "usr/sbin", "etc/cmsref"):
        a.dir(d)
    a.chardev("dev/console", 5, 1)
    a.chardev("dev/null", 1, 3, 0o666)
    a.copy("bin/busybox", root / "bin" / "busybox")
    if ElfFile(root / "bin" / "busybox").needed():
        raise HarnessSetupError("bin/busybox from busybox-static is not static")
    a.file("init", INIT.encode(), 0o755)
    a.file("etc/cmsref/lib.sh", LIB.encode())
    a.file("etc/cmsref/modules", ("\n".join(modules) + "\n").encode())
    a.symlink("etc/mtab", "/proc/self/mounts")  # libfuse 2 would otherwise try to write it
    a.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    a.file("etc/group", b"root:x:0:\n")
    mdir = f"lib/modules/{ver}"
    for m in modules:
        a.copy(f"{mdir}/{m}", root / mdir / m)
    # what depmod would write for these modules, so that busybox modprobe works too
    a.file(f"{mdir}/modules.dep", "".join(f"{m}: {' '.join(d)}\n" for m, d in dep_lines.items()).encode())
    # binaries and the closure of their DT_NEEDED libraries, plus the dynamic loader
    todo = BINARIES + PRELOADS
    for f in todo:
        if not (root / f).exists():
            raise HarnessSetupError(f"{f} is missing from the downloaded packages")
    seen: set[str] = set()
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        a.copy(rel, (root / rel).resolve())
        for soname in ElfFile((root / rel).resolve()).needed():
            todo.append(_find_lib(root, soname))
    loader = "lib/s390x-linux-gnu/ld64.so.1"
    a.copy(loader, root / loader)
    a.symlink("lib/ld64.so.1", "s390x-linux-gnu/ld64.so.1")  # PT_INTERP of s390x binaries
    for g in GCONV_FILES:
        a.copy(f"{GCONV}/{g}", root / GCONV / g)
    for conf in sorted((root / GCONV / "gconv-modules.d").glob("*.conf")):
        a.copy(f"{GCONV}/gconv-modules.d/{conf.name}", conf)
    for f in EXTRA_FILES:
        a.copy(f, root / f)
    for d in ("lib/s390x-linux-gnu", "usr/lib/s390x-linux-gnu"):
        if f"{d}" not in a:
            a.dir(d)
    return ver, a
