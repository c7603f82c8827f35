"""Container images (qcow2, VMDK, VHD/VHDX, VDI): recognised by content, opened through qemu-nbd.

fsproto parses none of these formats: QEMU's block layer (``qemu-nbd``, package qemu-utils) does,
including backing chains, and exports the virtual disk on a private unix socket that
:class:`~fsproto.blockdev.nbd.NbdBlockDevice` connects to. So a container opens read-write
exactly where QEMU writes its format, and ``qemu-img check`` is the judge of what we wrote.

Signatures (first sector unless noted), after QEMU's own probes (block/qcow2.c, vmdk.c, vhdx.c,
vpc.c, vdi.c): qcow/qcow2 ``QFI\\xfb`` + version; VMDK ``KDMV`` (sparse extent) or a text
descriptor ``# Disk DescriptorFile``; VHDX ``vhdxfile``; VHD ``conectix`` at offset 0 (dynamic,
the footer's copy) or in the last 512 bytes (fixed); VDI 0xbeda107f (LE) at offset 64. EWF
(E01/Ex01) is recognised here too but opened by :mod:`fsproto.blockdev.ewf`.

The helper: qemu-nbd in its own session, socket in a 0700 temp directory, the format given
explicitly (never probed: a raw image must not become a qcow2 by its content), no
``--persistent``, so it exits by itself when our one connection closes (also when this process
dies). :meth:`ContainerDevice.close` disconnects, waits for it and reaps it; the socket
directory goes with it. A helper that dies gives one DeviceError/MediaError with its last line.

Limits: one connection per opened container (qemu-nbd ``--shared=1``); QEMU's image locking
applies on top of fsproto's flock, so a container written by QEMU elsewhere refuses to open.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

from fsproto.blockdev.nbd import NbdBlockDevice
from fsproto.errors import DeviceError
from fsproto.subproc import HelperProcess

START_TIMEOUT_S = 30.0  # qemu-nbd opens a long backing chain in well under a second; this is a stuck helper

# fsproto's name -> (QEMU driver, what users call it)
CONTAINER_FORMATS = {
    "qcow2": ("qcow2", "qcow2"),
    "qcow": ("qcow", "qcow (v1)"),
    "vmdk": ("vmdk", "VMDK"),
    "vhdx": ("vhdx", "VHDX"),
    "vhd": ("vpc", "VHD"),
    "vdi": ("vdi", "VDI"),
    "ewf": ("", "EWF (E01)"),
    "ewf2": ("", "EWF2 (Ex01)"),
}


def sniff_container(path: str) -> str | None:
    """The container format of the file at *path* (a key of CONTAINER_FORMATS), or None for raw.

    Reads at most two sectors. Raises DeviceError when the file cannot be read.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(512)
            size = os.fstat(f.fileno()).st_size
            tail = b""
            if size >= 1024:
                f.seek(size - 512)
                tail = f.read(512)
    except OSError as e:
        raise DeviceError(f"cannot read: {e.strerror}", device=path) from e
    if head[:4] == b"QFI\xfb" and len(head) >= 8:
        return "qcow" if int.from_bytes(head[4:8], "big") == 1 else "qcow2"
    if head[:4] == b"KDMV" or head.startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    if head[:8] == b"vhdxfile":
        return "vhdx"
    if head[:8] == b"conectix" or tail[:8] == b"conectix":
        return "vhd"
    if len(head) >= 68 and int.from_bytes(head[64:68], "little") == 0xBEDA107F:
        return "vdi"
    if head[:8] == b"EVF\x09\x0d\x0a\xff\x00" or head[:8] == b"LVF\x09\x0d\x0a\xff\x00":
        return "ewf"
    if head[:8] == b"EVF2\r\n\x81\x00" or head[:8] == b"LEF2\r\n\x81\x00":
        return "ewf2"
    return None


def check_qcow2(path: str, *, writable: bool) -> None:
    """``qemu-img check`` a qcow2 before serving it: QEMU reads clusters past the end of a
    truncated file as zeros without a word, so truncation must be caught here.

    Raises DeviceError for a truncated image (always) or for other corruption when *writable*
    (writing a corrupt qcow2 can make it worse; reading it, for recovery, stays possible).
    """
    try:
        done = subprocess.run(["qemu-img", "check", "-U", "-f", "qcow2", path], capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DeviceError(f"qemu-img check did not run: {e}", device=path) from None
    if done.returncode in (0, 3):  # 3: leaked clusters only, harmless (space, not data)
        return
    errors = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.startswith(("ERROR", "qemu-img:"))]
    if any("exceeding the end of the file" in ln for ln in errors):
        raise DeviceError(f"qcow2 image is truncated: its tables point past the end of the file "
                          f"({len(errors)} error(s) from qemu-img check)", device=path)
    opening = [ln for ln in errors if ln.startswith("qemu-img:")]
    if done.returncode == 1 and opening:
        raise DeviceError(f"QEMU cannot open the qcow2: {opening[0].rsplit(': ', 1)[-1]}", device=path)
    if writable or done.returncode != 2:
        first = errors[0] if errors else f"qemu-img check exit status {done.returncode}"
        raise DeviceError(f"qemu-img check finds the qcow2 corrupt ({first}); repair it with "
                          "qemu-img check -r all, or open it read-only", device=path)


def display_name(container: str) -> str:
    return CONTAINER_FORMATS[container][1]


@dataclass(frozen=True)
class ContainerInfo:
    """What ``qemu-img info`` says of a container (for ``fsproto info``)."""

    format: str
    virtual_size: int
    file_size: int
    backing_chain: tuple[str, ...]


def describe_container(path: str) -> ContainerInfo | None:
    """``qemu-img info --backing-chain`` of *path*, or None when qemu-img cannot say (-U: works while served)."""
    try:
        done = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", path],
                              capture_output=True, text=True, timeout=30)
        chain = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not chain:
        return None
    top = chain[0]
    return ContainerInfo(
        format=top.get("format", "?"),
        virtual_size=int(top.get("virtual-size", 0)),
        file_size=int(top.get("actual-size", 0)),
        backing_chain=tuple(f"{c.get('filename')} ({c.get('format')})" for c in chain[1:]),
    )


class ContainerDevice(NbdBlockDevice):
    """The virtual disk of the container image at *path* (format *container*, from sniff_container).

    ``fileno()`` is a read-only descriptor of the container file itself, so fsproto's flock
    (:mod:`fsproto.blockdev.lock`) serialises writers of the container as it does for raw images.
    Raises DeviceError (qemu-nbd refused the image: its message, one line), DeviceNotFound.
    """

    def __init__(self, path: str, container: str, *, writable: bool = False) -> None:
        driver = CONTAINER_FORMATS[container][0]
        if not driver:
            raise DeviceError(f"{display_name(container)} images are not opened through qemu-nbd", device=path)
        self.container = container
        self.path = path
        if shutil.which("qemu-nbd") is None:
            raise DeviceError(f"{display_name(container)} image needs qemu-nbd (install qemu-utils)", device=path)
        if container == "qcow2":
            check_qcow2(path, writable=writable)
        try:
            self._file_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise DeviceError(f"cannot open: {e.strerror}", device=path) from e
        self._dir = tempfile.mkdtemp(prefix="fsproto-qemu-nbd-")  # mode 0700: the socket is ours alone
        sock = os.path.join(self._dir, "sock")
        argv = ["qemu-nbd", f"--format={driver}", f"--socket={sock}", "--cache=writeback", "--discard=unmap",
                *([] if writable else ["--read-only"]), os.path.abspath(path)]
        helper: HelperProcess | None = None
        try:
            helper = HelperProcess(argv, what="qemu-nbd", exits_by_itself=True)
            self._helper_process = helper
            self._connect(sock, helper, path, writable)
        except BaseException:
            if helper is not None:
                helper.exits_by_itself = False  # it never had a client to outlive
                helper.stop()
                helper.close_log()
            self._cleanup_files()
            raise

    def _connect(self, sock: str, helper: HelperProcess, path: str, writable: bool) -> None:
        uri = f"nbd+unix:///?socket={sock}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            failure = helper.failure()
            if failure:
                raise DeviceError(failure, device=path)
            if os.path.exists(sock):
                try:
                    super().__init__(uri, writable=writable, name=path, helper=helper)
                    return
                except DeviceError as e:
                    # bind() comes a moment before listen(): refused once, fine the next time
                    if "refused" not in str(e).lower() or time.monotonic() > deadline:
                        raise
            if time.monotonic() > deadline:
                raise DeviceError(f"qemu-nbd did not open the image within {START_TIMEOUT_S:.0f} s", device=path)
            time.sleep(0.01)

    def fileno(self) -> int:
        return self._file_fd

    def _close(self) -> None:
        try:
            super()._close()  # disconnect, then stop and reap qemu-nbd
        finally:
            self._helper_process.close_log()
            self._cleanup_files()

    def _cleanup_files(self) -> None:
        if getattr(self, "_file_fd", -1) >= 0:
            os.close(self._file_fd)
            self._file_fd = -1
        shutil.rmtree(self._dir, ignore_errors=True)

    def __str__(self) -> str:
        return f"ContainerDevice({self.path}, {display_name(self.container)}, {self.size} B, {'ro' if self.read_only else 'rw'})"
