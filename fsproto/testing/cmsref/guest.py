"""Boot the s390x guest with CMS disks attached, run a job script in it, collect the results.

One boot per :func:`run` call (~5 s under TCG plus the work): batch several disks and checks
into one script. The QEMU process runs in its own process group and is always killed and
reaped in ``finally``, whatever happens (timeout, Ctrl-C, an exception here).

Each disk is a ``virtio-blk-ccw`` device whose logical and physical block size equal the
disk's CMS block size, read from its label: on a block device cmsfs-fuse looks for the label
at 2 x and 1 x the sector size, so a 4096-byte-block disk with 512-byte sectors is refused
(``../shared/specs/cms-reference.md``).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from fsproto.errors import GuestError, HarnessError, ReferenceRefused, UsageError
from fsproto.testing.cmsref.label import cms_block_size
from fsproto.testing.cmsref.prepare import Prepared, load
from fsproto.testing.cmsref.scripts import DISK_DEVNO_BASE
from fsproto.subproc import kill_group

DEFAULT_TIMEOUT = 300.0
FAKETIME = "2024-03-15 12:00:00"  # the frozen daemon clock of the shared fixtures
TAIL_LINES = 40


@dataclass(frozen=True)
class Disk:
    """An image to attach; ``block_size`` None means: read it from the CMS label."""

    path: Path
    read_only: bool = False
    block_size: int | None = None


@dataclass
class Result:
    """What one guest run gave back."""

    exit_code: int
    output: str  # the job's stdout and stderr
    console_tail: str  # the last lines of the guest console (kernel and init messages)
    files: dict[str, bytes] = field(default_factory=dict)  # $OUT in the guest, by relative path
    seconds: float = 0.0  # wall time of the QEMU process

    def check(self) -> "Result":
        """Return self when the job exited 0; raises HarnessError with the output's last line."""
        if self.exit_code != 0:
            last = [ln for ln in self.output.splitlines() if ln.strip()][-1:] or ["(no output)"]
            raise HarnessError(f"guest job exited {self.exit_code}: {last[0]}", console_tail=self.console_tail)
        return self


def _tail(*paths: Path, lines: int = TAIL_LINES) -> str:
    text = ""
    for p in paths:
        try:
            text += p.read_bytes().decode("utf-8", "replace")
        except OSError:
            pass
    text = text.replace("\r", "")
    return "\n".join(text.splitlines()[-lines:])


def _last_words(tail: str, n: int = 3) -> str:
    """The last *n* meaningful console lines, joined, for a one-line error message."""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip() and not ln.startswith("cmsref: done")]
    return " | ".join(lines[-n:]) if lines else "(console empty)"


def _disks(images: Sequence[Path | str | Disk]) -> list[Disk]:
    out = []
    for img in images:
        d = img if isinstance(img, Disk) else Disk(Path(img))
        if not d.path.is_file():
            raise UsageError(f"{d.path}: no such image file")
        bs = d.block_size or cms_block_size(d.path)
        out.append(Disk(d.path.resolve(), d.read_only, bs))
    return out


def qemu_command(prep: Prepared, disks: Sequence[Disk], share: Path, console: Path, memory_mb: int = 1024) -> list[str]:
    """The QEMU command line (s390-ccw-virtio, TCG, SCLP console to a file, 9p share)."""
    cmd = [
        prep.qemu, "-M", "s390-ccw-virtio", "-accel", "tcg", "-m", str(memory_mb), "-smp", "1",
        "-display", "none", "-no-reboot", "-nodefaults", "-no-user-config",
        "-chardev", f"file,id=con0,path={console}", "-device", "sclpconsole,chardev=con0",
        "-kernel", str(prep.kernel), "-initrd", str(prep.initrd),
        # panic=-1 + -no-reboot: a guest that cannot boot ends QEMU at once instead of hanging
        "-append", "console=ttysclp0 rdinit=/init quiet loglevel=4 panic=-1",
        "-fsdev", f"local,id=fs0,path={share},security_model=none",
        "-device", "virtio-9p-ccw,fsdev=fs0,mount_tag=host0,devno=fe.0.0001",
    ]
    for i, d in enumerate(disks):
        ro = ",readonly=on" if d.read_only else ""
        path = str(d.path).replace(",", ",,")  # QEMU option escaping
        cmd += [
            "-drive", f"file={path},if=none,id=d{i},format=raw,cache=writeback{ro}",
            "-device",
            f"virtio-blk-ccw,drive=d{i},devno=fe.0.{DISK_DEVNO_BASE + i:04x},"
            f"logical_block_size={d.block_size},physical_block_size={d.block_size}",
        ]
    return cmd


def _collect(root: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if root.is_dir():
        for p in sorted(root.rglob("*")):
            if p.is_file():
                files[str(p.relative_to(root))] = p.read_bytes()
    return files


def run(
    images: Sequence[Path | str | Disk],
    script: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    faketime: str | None = FAKETIME,
    cache: Path | None = None,
    keep: Path | None = None,
    inputs: Mapping[str, bytes] | None = None,
) -> Result:
    """Boot the guest with *images* as ``$DISK0..``, run *script* (busybox sh), return the result.

    The script may use the helpers of :data:`fsproto.testing.cmsref.scripts.LIB`
    (``cms_mount``, ``cms_umount``, ``cms_inspect``) and writes files to return under ``$OUT``.
    *faketime* freezes cmsfs-fuse's clock (None: the guest's real clock). *keep*: copy the
    share directory there for debugging. *inputs*: files (relative path -> bytes) the script
finds under ``$IN``.

    Raises UsageError (an image missing), HarnessSetupError (not prepared), FormatError (no
    CMS label), ReferenceRefused (cmsfs-fuse refused a mount), GuestError (no boot, a crash,
    or *timeout* seconds passed). A job that merely fails returns its non-zero exit_code.
    """
    disks = _disks(images)
    prep = load(cache)
    work = Path(tempfile.mkdtemp(prefix="cmsref-"))
    try:
        share, console, qlog = work / "share", work / "console.log", work / "qemu.log"
        share.mkdir()
        exports = dict(env or {})
        if faketime:
            exports["CMSREF_FAKETIME"] = faketime
        head = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports.items())
        for rel, data in (inputs or {}).items():
            dest = share / "in" / rel
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise UsageError(f"input name {rel!r} must be a relative path inside $IN")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        (share / "job.sh").write_text(head + script + "\n")
        cmd = qemu_command(prep, disks, share, console)
        start = time.monotonic()
        timed_out = False
        with open(qlog, "wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                kill_group(proc)
        seconds = time.monotonic() - start
        tail = _tail(qlog, console)
        if keep is not None:
            shutil.copytree(work, keep, dirs_exist_ok=True)
        refused = share / "refused"
        if refused.exists():
            msg = refused.read_text(errors="replace").strip()
            raise ReferenceRefused(msg, console_tail=tail)
        if not (share / "booted").exists():
            why = f"did not boot within {timeout:.0f} s" if timed_out else f"did not boot (QEMU exited {proc.returncode})"
            raise GuestError(f"the s390x guest {why}: {_last_words(tail)}", console_tail=tail)
        output = (share / "output").read_bytes().decode("utf-8", "replace") if (share / "output").exists() else ""
        found = (share / "disks").read_text().split() if (share / "disks").exists() else []
        if len(found) != len(disks):
            raise GuestError(f"the guest saw {len(found)} of {len(disks)} disks: {' '.join(found)}", console_tail=tail)
        if timed_out:
            raise GuestError(f"the guest job did not finish within {timeout:.0f} s: {_last_words(output)}", console_tail=tail)
        rc_path = share / "rc"
        if not rc_path.exists():
            raise GuestError(f"the guest stopped before its job ended: {_last_words(tail)}", console_tail=tail)
        return Result(int(rc_path.read_text().strip() or "255"), output, tail, _collect(share / "files"), seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
