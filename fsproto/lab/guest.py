"""Boot a throwaway QEMU guest that shares the host's root read-only, run one command, power off.

The command line is hardware.md 5's verified recipe: q35, TCG (``-cpu max``), PVH boot of the
cached ELF kernel, the host ``/`` over virtio-9p, emulated NVMe controllers (``nvme``) and SATA
disks on q35's built-in ICH9 AHCI (``ahci``) backed by image files, ``-no-reboot`` with
``panic=-1`` so even a crashing guest makes QEMU exit. With ``iommu=True`` an Intel vIOMMU is
added and the guest boots with ``intel_iommu=on iommu=pt``: vfio-pci then gets a real IOMMU
domain while devices left to other drivers (uio_pci_generic) keep identity mappings, so both
DMA paths work in one boot.

KVM is used only where hardware virtualisation is really there (``kvm_intel``/``kvm_amd``
loaded; ``/dev/kvm`` alone is not enough on these machines, see the spec); otherwise TCG.

QEMU runs in its own session; on timeout or any exception only that process group is killed.
Limits: x86-64 guests only; the guest sees the host's files read-only (write to /tmp, /run or
to the disks); the command's stdout and stderr arrive interleaved on the serial console.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fsproto.errors import GuestError, HarnessSetupError, UsageError
from fsproto.lab import initramfs
from fsproto.lab.kernel import GuestKernel, load, prepare
from fsproto.subproc import kill_group

QEMU = "qemu-system-x86_64"
NVME_FIRST_SLOT = 4  # NVMe controllers at 00:04.0, 00:05.0, ... (virtio-9p takes 00:03.0)
AHCI_BDF = "0000:00:1f.2"


@dataclass(frozen=True)
class Disk:
    """An image file attached to the guest as an NVMe namespace or a SATA disk."""

    path: str
    kind: str = "nvme"  # "nvme" or "ahci"
    serial: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("nvme", "ahci"):
            raise UsageError(f"disk kind must be nvme or ahci, not {self.kind!r}")


@dataclass
class LabResult:
    """What the guest command did: its exit status and output, plus the whole console."""

    status: int
    output: str
    console: str
    seconds: float
    accel: str
    pci: dict[str, str] = field(default_factory=dict)  # image path -> guest PCI address ("0000:00:04.0")

    @property
    def ok(self) -> bool:
        return self.status == 0


def kvm_usable() -> bool:
    """True when hardware virtualisation is loaded (kvm_intel/kvm_amd) and /dev/kvm is there."""
    return os.path.exists("/dev/kvm") and any(os.path.isdir(f"/sys/module/{m}") for m in ("kvm_intel", "kvm_amd"))


def hidden_shares(paths: list[str]) -> list[tuple[str, str]]:
    """(tag, path) for each of *paths* that the guest's own tmpfs on /tmp, /run, /dev/shm would
    hide (a CI checkout, its venv, a pytest tmp dir), outermost only, so it is shared over 9p."""
    hidden_roots = ("/tmp", "/run", "/dev/shm")
    chosen: list[str] = []
    for p in sorted({os.path.realpath(p) for p in paths}, key=len):
        if not any(p == r or p.startswith(r + "/") for r in hidden_roots) or p in hidden_roots:
            continue
        if any(p == c or p.startswith(c + "/") for c in chosen):
            continue
        chosen.append(p)
    return [(f"share{i}", p) for i, p in enumerate(chosen)]


def qemu_command(kernel: GuestKernel, initrd: Path, disks: list[Disk], *, accel: str, iommu: bool, memory_mb: int,
                 smp: int, trace_log: Path | None = None,
                 shares: list[tuple[str, str]] | None = None) -> tuple[list[str], dict[str, str]]:
    """The QEMU argv and the PCI address of each disk (NVMe) or controller (AHCI)."""
    append = "console=ttyS0 panic=-1 mitigations=off quiet loglevel=3 tsc=reliable"
    if iommu:
        append += " intel_iommu=on iommu=pt"
    argv = [QEMU, "-accel", accel, "-M", "q35", "-cpu", "max" if accel == "tcg" else "host", "-smp", str(smp),
            "-m", f"{memory_mb}M", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
            "-monitor", "none", "-no-reboot", "-kernel", str(kernel.vmlinux), "-initrd", str(initrd),
            "-append", append,
            "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot,addr=03.0"]
    for i, (tag, path) in enumerate(shares or []):
        if "," in path:
            raise UsageError("QEMU cannot share a path containing ','", device=path)
        argv += ["-fsdev", f"local,id={tag},path={path},security_model=none,readonly=on,multidevs=remap",
                 "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag},addr={0x10 + i:02x}.0"]
    if iommu:
        argv += ["-device", "intel-iommu"]  # must come before the devices it translates
    where: dict[str, str] = {}
    nvme_slot, sata_port = NVME_FIRST_SLOT, 0
    for i, d in enumerate(disks):
        path = os.path.abspath(d.path)
        if "," in path:
            raise UsageError("QEMU cannot take an image path containing ','", device=path)
        if not os.path.isfile(path):
            raise UsageError("no such image file", device=path)
        argv += ["-drive", f"file={path},if=none,id=disk{i},format=raw,cache=writeback"]
        serial = d.serial or f"fsproto-lab-{i}"
        if d.kind == "nvme":
            argv += ["-device", f"nvme,serial={serial},drive=disk{i},addr={nvme_slot:02x}.0"]
            where[path] = f"0000:00:{nvme_slot:02x}.0"
            nvme_slot += 1
        else:
            argv += ["-device", f"ide-hd,drive=disk{i},bus=ide.{sata_port},serial={serial}"]
            where[path] = AHCI_BDF
            sata_port += 1
    if trace_log is not None:
        argv += ["-trace", "pci_nvme_mmio_*", "-D", str(trace_log)]
    return argv, where


def run(command: str, *, disks: list[Disk] = (), timeout: float = 300, iommu: bool = False,  # type: ignore[assignment]
        accel: str = "auto", memory_mb: int = 1024, smp: int = 2, env: dict[str, str] | None = None,
        cwd: str | None = None, on_line: Callable[[str], None] | None = None, prepare_kernel: bool = True) -> LabResult:
    """Run the shell *command* in a fresh guest; returns its status and output.

    *cwd* (default: this process's) is where the command starts, as seen over 9p. *on_line* gets
    every output line as it arrives. Raises GuestError (no boot, died, timeout: the console
    tail is attached), HarnessSetupError (no QEMU, no kernel, no busybox), UsageError.
    """
    if shutil.which(QEMU) is None:
        raise HarnessSetupError(f"{QEMU} is not installed: run tools/setup.sh (qemu-system-x86)")
    kernel = prepare(log=lambda msg: print(msg, file=sys.stderr)) if prepare_kernel else load()
    if kernel is None:
        raise HarnessSetupError("no lab kernel in the cache: run `fsproto lab prepare`")
    if accel == "auto":
        accel = "kvm" if kvm_usable() else "tcg"
    # The guest runs this same interpreter (over 9p), so its packages import there too.
    path = f"{os.path.dirname(sys.executable)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {"PATH": path, "FSPROTO_PYTHON": sys.executable, **(env or {})}
    workdir = Path(tempfile.mkdtemp(prefix="fsproto-lab-"))
    cwd = os.path.abspath(cwd or os.getcwd())
    script = (f"cd {_quote(cwd)} 2>/dev/null || {{ echo 'lab: the working directory is not visible in the guest'; "
              f"exit 125; }}\n{command}\n")
    import fsproto

    # The guest mounts its own tmpfs on /tmp and /run; whatever of ours lives there is shared again.
    shares = hidden_shares([cwd, sys.prefix, str(Path(fsproto.__file__).resolve().parent.parent)])
    try:
        initrd = initramfs.build(kernel, script, workdir / "initramfs.cpio.gz", env=env, shares=shares)
        argv, where = qemu_command(kernel, initrd, list(disks), accel=accel, iommu=iommu, memory_mb=memory_mb, smp=smp,
                                   shares=shares)
        return _boot(argv, where, timeout, accel, on_line)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


_END = re.compile(re.escape(initramfs.END) + r" rc=(\d+)")


def _boot(argv: list[str], where: dict[str, str], timeout: float, accel: str,
          on_line: Callable[[str], None] | None) -> LabResult:
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    console: list[str] = []
    partial = b""
    inside = False
    output: list[str] = []
    status: int | None = None
    try:
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = start + timeout
        eof = False
        while not eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestError(f"guest did not finish within {timeout:g} s (killed)",
                                 console_tail="".join(console[-40:]))
            for _key, _ev in sel.select(timeout=min(left, 1.0)):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    eof = True
                    break
                partial += chunk
                *lines, partial = partial.split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace").replace("\r", "") + "\n"
                    console.append(line)
                    m = _END.search(line)
                    if m:
                        status = int(m.group(1))
                        inside = False
                        before = line[: m.start()]
                        if before:
                            output.append(before)
                            if on_line:
                                on_line(before)
                    elif inside:
                        output.append(line)
                        if on_line:
                            on_line(line)
                    elif initramfs.BEGIN in line:
                        inside = True
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise GuestError(f"guest did not power off within {timeout:g} s (killed)",
                         console_tail="".join(console[-40:])) from None
    finally:
        kill_group(proc)  # our own session only (start_new_session)
    if status is None:
        tail = "".join(console[-40:])
        raise GuestError(f"guest ended without running the command to completion (QEMU status {proc.returncode})",
                         console_tail=tail)
    return LabResult(status, "".join(output), "".join(console), time.monotonic() - start, accel, where)
