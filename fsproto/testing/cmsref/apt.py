"""Host side of preparing the reference: Debian's package registry, through apt only.

What it does, each step only when needed (so a prepared machine is left alone):

* ``qemu-system-s390x`` >= 8.1 on the host. Debian 12's own 7.2 lacks the ``CVB``
  instruction cmsfs-fuse uses for every FST date (``../shared/specs/cms-reference.md``), so on
  bookworm it comes from ``bookworm-backports`` of the **same archive** apt already uses: a
  sources entry for that suite is added when no configured source serves it;
* the ``s390x`` foreign architecture (``dpkg --add-architecture``), so that
  ``apt-get download PKG:s390x`` finds the guest's packages;
* ``apt-get download`` and ``dpkg-deb -x`` of the guest packages (nothing installed).

Every failure is a :class:`~fsproto.errors.HarnessSetupError` whose message is one line.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Sequence

from fsproto.errors import HarnessSetupError

QEMU = "qemu-system-s390x"
QEMU_MIN = (8, 1)
SOURCES_FILE = Path("/etc/apt/sources.list.d/fsproto-backports.sources")
_APT_OPTS = ["-o", "DPkg::Lock::Timeout=600", "-o", "APT::Sandbox::User=root"]


def _run(cmd: Sequence[str], what: str, *, cwd: Path | None = None, timeout: float = 1800) -> str:
    """Run a host command; its last error line becomes the one-line message on failure."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    try:
        p = subprocess.run(
            list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise HarnessSetupError(f"{what}: {cmd[0]} is not installed (is this Debian?)") from None
    except subprocess.TimeoutExpired:
        raise HarnessSetupError(f"{what}: {cmd[0]} did not finish within {timeout:.0f} s") from None
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
        errs = [ln for ln in lines if ln.startswith(("E:", "dpkg", "error"))] or lines or ["(no output)"]
        raise HarnessSetupError(f"{what}: {errs[-1].strip()}")
    return p.stdout


def qemu_version(binary: str = QEMU) -> tuple[int, int] | None:
    """(major, minor) of the installed QEMU, or None when it is not installed."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        raise HarnessSetupError("cannot read /etc/os-release: the reference harness needs Debian") from None
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    if not m:
        raise HarnessSetupError("/etc/os-release names no VERSION_CODENAME: the reference harness needs Debian")
    return m.group(1)


def configured_sources() -> list[tuple[str, list[str]]]:
    """Every ``deb`` source apt uses: (URI, suites), from one-line and deb822 files."""
    found: list[tuple[str, list[str]]] = []
    files = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*"))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".list" or f.name == "sources.list":
            for line in text.splitlines():
                line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()  # drop [options]
                if len(line) >= 3 and line[0] == "deb":
                    found.append((line[1].rstrip("/"), [line[2]]))
        elif f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for ln in stanza.splitlines():
                    if ln.startswith("#") or ":" not in ln or ln[0].isspace():
                        continue
                    k, v = ln.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
                if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                    for uri in fields.get("uris", "").split():
                        found.append((uri.rstrip("/"), fields.get("suites", "").split()))
    return found


def ensure_backports_source(codename: str) -> bool:
    """Add ``<codename>-backports`` of the archive that serves ``<codename>``; True if added.

    Raises HarnessSetupError when no configured source serves the release itself.
    """
    suite = f"{codename}-backports"
    sources = configured_sources()
    if any(suite in suites for _uri, suites in sources):
        return False
    archive = next((uri for uri, suites in sources if codename in suites), None)
    if archive is None:
        raise HarnessSetupError(f"no apt source serves {codename}; cannot add {suite} of the same archive")
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    signed = f"Signed-By: {keyring}\n" if Path(keyring).exists() else ""
    SOURCES_FILE.write_text(
        "# Added by fsproto's reference harness (tools/cmsref prepare): qemu-system-s390x >= 8.1\n"
        f"Types: deb\nURIs: {archive}\nSuites: {suite}\nComponents: main\n{signed}"
    )
    return True


def apt_update() -> None:
    _run(["apt-get", *_APT_OPTS, "update", "-qq"], "apt-get update")


def _candidate(pkg: str) -> str | None:
    out = _run(["apt-cache", "policy", pkg], f"apt-cache policy {pkg}")
    m = re.search(r"Candidate: (\S+)", out)
    return None if m is None or m.group(1) == "(none)" else m.group(1)


def _upstream(version: str) -> tuple[int, int]:
    m = re.match(r"(?:\d+:)?(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def ensure_qemu() -> tuple[int, int]:
    """Make ``qemu-system-s390x`` >= 8.1 installed; returns its version.

    Raises HarnessSetupError (not root, no suitable package, apt failure).
    """
    have = qemu_version()
    if have is not None and have >= QEMU_MIN:
        return have
    if os.geteuid() != 0:
        raise HarnessSetupError(f"{QEMU} >= 8.1 is not installed and installing it needs root")
    codename = _codename()
    cand = _candidate(QEMU)
    target: list[str] = []
    if cand is None or _upstream(cand) < QEMU_MIN:
        suite = f"{codename}-backports"
        added = ensure_backports_source(codename)
        policy = _run(["apt-cache", "policy", QEMU], f"apt-cache policy {QEMU}")
        if added or suite not in policy:  # the suite's package list was never fetched
            apt_update()
        target = ["-t", suite]
    _run(
        ["apt-get", *_APT_OPTS, "install", "-y", "-qq", "--no-install-recommends", *target, QEMU],
        f"apt-get install {QEMU}",
    )
    have = qemu_version()
    if have is None or have < QEMU_MIN:
        raise HarnessSetupError(f"{QEMU} {have} installed, but >= 8.1 is needed (cmsfs-fuse needs the CVB instruction)")
    return have


def ensure_s390x_arch() -> None:
    """``dpkg --add-architecture s390x`` and refresh the lists, once. Raises HarnessSetupError."""
    foreign = _run(["dpkg", "--print-foreign-architectures"], "dpkg").split()
    if "s390x" in foreign and _candidate("libc6:s390x") is not None:
        return
    if os.geteuid() != 0:
        raise HarnessSetupError("the s390x architecture is not configured for apt and adding it needs root")
    if "s390x" not in foreign:
        _run(["dpkg", "--add-architecture", "s390x"], "dpkg --add-architecture s390x")
    apt_update()


def kernel_package() -> str:
    """The versioned kernel package the ``linux-image-s390x`` metapackage points at."""
    out = _run(["apt-cache", "depends", "linux-image-s390x:s390x"], "apt-cache depends linux-image-s390x:s390x")
    m = re.search(r"Depends: (linux-image-[0-9][^\s:]*-s390x)", out)
    if not m:
        raise HarnessSetupError("linux-image-s390x:s390x names no kernel package (apt-cache depends)")
    return m.group(1)


def download(packages: Sequence[str], dest: Path) -> list[Path]:
    """``apt-get download PKG:s390x`` for each; returns the .deb files. Raises HarnessSetupError.

    A missing package is named on its own, so the one line says which one.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.deb"):
        old.unlink()
    specs = [f"{p}:s390x" for p in packages]
    try:
        _run(["apt-get", *_APT_OPTS, "download", *specs], "apt-get download", cwd=dest)
    except HarnessSetupError:
        for spec in specs:  # find the culprit for a one-line message
            if _candidate(spec) is None:
                raise HarnessSetupError(f"package {spec} is not available from the configured Debian archive") from None
        raise
    debs = sorted(dest.glob("*.deb"))
    if len(debs) != len(packages):
        raise HarnessSetupError(f"apt-get download gave {len(debs)} packages for {len(packages)} asked")
    return debs


def unpack(debs: Sequence[Path], root: Path) -> dict[str, str]:
    """``dpkg-deb -x`` each into *root*; returns {package: version}. Raises HarnessSetupError."""
    root.mkdir(parents=True, exist_ok=True)
    versions: dict[str, str] = {}
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}")
        fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"], f"dpkg-deb -f {deb.name}")
        kv = dict(ln.split(": ", 1) for ln in fields.splitlines() if ": " in ln)
        versions[kv.get("Package", deb.name)] = kv.get("Version", "?")
    return versions
