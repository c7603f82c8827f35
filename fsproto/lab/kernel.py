"""The lab's guest kernel: a Debian ``linux-image-*-amd64`` unpacked into a cache, never installed.

Why not the host's kernel: CI machines run cloud kernels without 9p (the lab shares the host's
root over virtio-9p), and a kernel in ``/boot`` is not needed to boot QEMU. Steps, each done
once and skipped when its result is in the cache (hardware.md 5, "Kernel without installing it
into /boot"):

1. ``apt-cache depends linux-image-amd64`` names the versioned package;
2. ``apt-get download`` + ``dpkg-deb -x`` into ``<cache>/kroot`` (the .deb is deleted after);
3. ``depmod -b`` (the .deb ships no ``modules.dep``);
4. the ELF ``vmlinux`` is cut out of the xz-compressed bzImage with :mod:`lzma`, so QEMU boots it
   through its PVH note and skips the 4-5 s xz decompression that TCG makes slow.

Every failure is a :class:`~fsproto.errors.HarnessSetupError` with a one-line message.
Limits: Debian (apt) hosts, x86-64 guests; about 70 MB of download and 0.5 GB of cache.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fsproto.errors import HarnessSetupError

META_PACKAGE = "linux-image-amd64"
_XZ_MAGIC = b"\xfd7zXZ\x00"


def default_cache() -> Path:
    """``$FSPROTO_LAB_CACHE``, else ``$XDG_CACHE_HOME/fsproto/lab``, else ``~/.cache/fsproto/lab``."""
    env = os.environ.get("FSPROTO_LAB_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fsproto" / "lab"


@dataclass(frozen=True)
class GuestKernel:
    """A prepared kernel: the PVH-bootable ELF, its release string and its modules tree."""

    release: str  # "6.1.0-56-amd64"
    vmlinux: Path
    modules: Path  # <kroot>/lib/modules/<release>

    def module_path(self, name: str) -> Path | None:
        """The .ko file of module *name* (``-``/``_`` equivalent), or None when built in/absent."""
        want = name.replace("-", "_")
        for line in (self.modules / "modules.dep").read_text().splitlines():
            rel = line.split(":", 1)[0]
            if Path(rel).name.split(".ko")[0].replace("-", "_") == want:
                return self.modules / rel
        return None

    def load_order(self, names: list[str]) -> list[Path]:
        """*names* and their dependencies, dependencies first (from modules.dep)."""
        deps: dict[str, list[str]] = {}
        for line in (self.modules / "modules.dep").read_text().splitlines():
            rel, _, rest = line.partition(":")
            deps[rel] = rest.split()
        by_name = {Path(r).name.split(".ko")[0].replace("-", "_"): r for r in deps}
        order: list[str] = []

        def visit(rel: str) -> None:
            for d in deps.get(rel, []):
                visit(d)
            if rel not in order:
                order.append(rel)

        for n in names:
            rel = by_name.get(n.replace("-", "_"))
            if rel is not None:  # built in (=y): nothing to load
                visit(rel)
        return [self.modules / r for r in order]


def _run(cmd: list[str], what: str, *, cwd: Path | None = None, timeout: float = 900) -> str:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise HarnessSetupError(f"{what}: {cmd[0]} is not installed (the lab needs a Debian host)") from None
    except subprocess.TimeoutExpired:
        raise HarnessSetupError(f"{what}: did not finish within {timeout:.0f} s") from None
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()] or ["(no output)"]
        raise HarnessSetupError(f"{what}: {lines[-1].strip()}")
    return p.stdout


def extract_vmlinux(bzimage: Path, out: Path) -> None:
    """Decompress the ELF kernel inside an xz bzImage. Raises HarnessSetupError."""
    data = bzimage.read_bytes()
    start = data.find(_XZ_MAGIC)
    if start < 0:
        raise HarnessSetupError(f"{bzimage}: no xz payload (not a Debian x86 bzImage?)")
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    except lzma.LZMAError as e:
        raise HarnessSetupError(f"{bzimage}: xz payload is corrupt: {e}") from None
    if elf[:4] != b"\x7fELF":
        raise HarnessSetupError(f"{bzimage}: the payload is not an ELF kernel")
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(elf)
    tmp.replace(out)


def load(cache: Path | None = None) -> GuestKernel | None:
    """The prepared kernel in *cache*, or None when :func:`prepare` has not run (or was damaged)."""
    cache = cache or default_cache()
    try:
        info = json.loads((cache / "kernel.json").read_text())
        k = GuestKernel(info["release"], cache / info["vmlinux"], cache / info["modules"])
    except (OSError, ValueError, KeyError):
        return None
    if k.vmlinux.is_file() and (k.modules / "modules.dep").is_file():
        return k
    return None


def prepare(cache: Path | None = None, *, log=print) -> GuestKernel:  # type: ignore[no-untyped-def]
    """Make sure a guest kernel is in *cache*; returns it. Idempotent. Raises HarnessSetupError."""
    cache = cache or default_cache()
    found = load(cache)
    if found is not None:
        return found
    out = _run(["apt-cache", "depends", META_PACKAGE], f"apt-cache depends {META_PACKAGE}")
    m = re.search(r"Depends: (linux-image-[0-9][^\s:]*-amd64)\b", out)
    if not m:
        raise HarnessSetupError(f"{META_PACKAGE} names no kernel package; run `apt-get update`")
    package = m.group(1)
    release = package[len("linux-image-") :]
    cache.mkdir(parents=True, exist_ok=True)
    dl = cache / "download"
    shutil.rmtree(dl, ignore_errors=True)
    dl.mkdir()
    log(f"lab: downloading {package} (about 70 MB)")
    download = ["apt-get", "-o", "APT::Sandbox::User=root", "download", package]
    try:
        _run(download, f"apt-get download {package}", cwd=dl)
    except HarnessSetupError:
        # Stale package lists name a version the mirror no longer has: refresh once, retry.
        _run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq"], "apt-get update")
        _run(download, f"apt-get download {package}", cwd=dl)
    debs = sorted(dl.glob("*.deb"))
    if len(debs) != 1:
        raise HarnessSetupError(f"apt-get download {package} gave {len(debs)} files")
    kroot = cache / "kroot"
    shutil.rmtree(kroot, ignore_errors=True)
    log(f"lab: unpacking {debs[0].name}")
    _run(["dpkg-deb", "-x", str(debs[0]), str(kroot)], f"dpkg-deb -x {debs[0].name}")
    shutil.rmtree(dl, ignore_errors=True)
    _run(["depmod", "-b", str(kroot), release], "depmod")
    bz = kroot / "boot" / f"vmlinuz-{release}"
    if not bz.is_file():
        raise HarnessSetupError(f"{package} has no /boot/vmlinuz-{release}")
    vmlinux = cache / f"vmlinux-{release}"
    extract_vmlinux(bz, vmlinux)
    modules = kroot / "lib" / "modules" / release
    (cache / "kernel.json").write_text(json.dumps({
        "package": package, "release": release, "vmlinux": vmlinux.name,
        "modules": str(modules.relative_to(cache)),
    }))
    k = load(cache)
    if k is None:
        raise HarnessSetupError(f"prepared kernel in {cache} is incomplete")
    return k
