"""The Linux kernel's own vfat driver as an independent reader of FAT images.

The host kernel of a CI machine may lack vfat (this one does: no modules at all), so the image
is loop-mounted read-only inside a QEMU guest: the Debian kernel from ``tools/setup.sh``
(linux-image-cloud-amd64), an initramfs of busybox-static plus the virtio, fat and nls modules,
and the image as a read-only virtio disk. The guest prints every directory and every file's
SHA-256 between two markers on the serial console, then powers off.

Used by tests/test_fat_tools.py and tests/test_fat_fuse.py; KVM is used when /dev/kvm exists.
:func:`kernel_write_over_nbd` is the writing variant: the guest attaches an NBD export as its
disk (QEMU's own NBD client), mounts it read-write, writes one file and unmounts
(tests/test_nbd_guest.py).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

MODULES = ["virtio_blk", "virtio_pci", "vfat", "nls_cp437", "nls_iso8859-1", "nls_utf8", "loop"]
BEGIN, END = "@@FSPROTO-BEGIN@@", "@@FSPROTO-END@@"

# Every guest /init starts the same way: busybox applets, the pseudo-filesystems, the modules in
# the dependency order initramfs() wrote to /modules.order.
GUEST_PREAMBLE = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/$m; done
"""

INIT = GUEST_PREAMBLE + """n=$(cat /ndisks)
last=$(echo abcdefghijklmnop | cut -c$n)
i=0; while [ ! -b /dev/vd$last ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
for d in $(echo abcdefghijklmnop | cut -c1-$n | sed 's/./& /g'); do
  mkdir -p /mnt/$d
  # the kernel's vfat driver, on a loop device, read-only (as `mount -o ro,loop` on a host)
  if mount -t vfat -o ro,loop,iocharset=utf8,codepage=437 /dev/vd$d /mnt/$d; then
    echo BEGIN_MARK
    (cd /mnt/$d && find . -type d | sed 's/^/D /'; find . -type f -exec sha256sum {} \\; | sed 's/^/F /'
     find . -type f -exec stat -c 'M %Y %n' {} \\;)
    echo END_MARK
    umount /mnt/$d
  else
    echo BEGIN_MARK; echo MOUNT-FAILED; dmesg | tail -5; echo END_MARK
  fi
done
poweroff -f
""".replace("BEGIN_MARK", BEGIN).replace("END_MARK", END)


def kernel() -> tuple[Path, Path] | None:
    """(vmlinuz, its modules directory) of an installed Debian kernel, or None."""
    for vmlinuz in sorted(glob.glob("/boot/vmlinuz-*"), reverse=True):
        ver = vmlinuz.split("vmlinuz-", 1)[1]
        mods = Path("/lib/modules") / ver
        if (mods / "kernel/fs/fat/vfat.ko").exists() or (mods / "modules.dep").exists():
            return Path(vmlinuz), mods
    return None


def _module_order(mods: Path) -> list[str]:
    deps: dict[str, list[str]] = {}
    for line in (mods / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {Path(p).name.split(".ko")[0].replace("-", "_"): p for p in deps}
    order: list[str] = []

    def visit(p: str) -> None:
        for d in deps.get(p, []):
            visit(d)
        if p not in order:
            order.append(p)

    for m in MODULES:
        p = by_name.get(m.replace("-", "_"))
        if p:  # built-in modules (=y) are not listed and need nothing
            visit(p)
    return order


WRITE_INIT = GUEST_PREAMBLE + """i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mkdir -p /mnt/a
echo BEGIN_MARK
# the kernel's vfat driver, read-write, straight on the NBD-backed virtio disk
if mount -t vfat -o rw,iocharset=utf8,codepage=437 /dev/vda /mnt/a; then
  cp /payload "/mnt/a/$(cat /payload_name)"
  sync
  ls /mnt/a | sed 's/^/L /'
  umount /mnt/a && echo UMOUNT-OK
else
  echo MOUNT-FAILED; dmesg | tail -5
fi
echo END_MARK
poweroff -f
""".replace("BEGIN_MARK", BEGIN).replace("END_MARK", END)


@lru_cache(maxsize=16)
def initramfs(ndisks: int, init: str = INIT, extra: tuple[tuple[str, str], ...] = (),
              files: tuple[tuple[str, bytes], ...] = ()) -> Path:
    """Build (once per arguments and test process) the guest's initramfs; returns its path.

    *init* is the guest's /init script; *extra* adds (guest path, host file) pairs (a probe
    binary, its scripts); *files* adds (guest path, contents) pairs.
    """
    found = kernel()
    if found is None:
        raise RuntimeError("no /boot/vmlinuz-*: run tools/setup.sh (linux-image-cloud-amd64)")
    _, mods = found
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox-static is not installed: run tools/setup.sh")
    root = Path(tempfile.mkdtemp(prefix="fsproto-vm-"))
    for d in ("bin", "proc", "sys", "dev", "lib", "mnt"):
        (root / d).mkdir()
    shutil.copy(busybox, root / "bin/busybox")
    order = _module_order(mods)
    for rel in order:
        dst = root / "lib" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".xz"):
            dst = dst.with_suffix("")
            subprocess.run(["xz", "-dc", str(mods / rel)], stdout=open(dst, "wb"), check=True)
        else:
            shutil.copy(mods / rel, dst)
    for guest_path, host_file in extra:
        shutil.copy(host_file, root / guest_path.lstrip("/"))
    (root / "modules.order").write_text("\n".join(r.removesuffix(".xz") for r in order) + "\n")
    (root / "init").write_text(init)
    for name, data in files:
        (root / name).write_bytes(data)
    (root / "ndisks").write_text(f"{ndisks}\n")
    os.chmod(root / "init", 0o755)
    out = root.with_suffix(".cpio")
    files = subprocess.run(["find", "."], cwd=root, capture_output=True, text=True, check=True).stdout
    with open(out, "wb") as f:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files.encode(), stdout=f,
                       check=True)
    shutil.rmtree(root)
    return out


def boot(images: list[str | os.PathLike[str]], initrd: Path, *, writable: bool = False, timeout: float = 300
         ) -> str:
    """Boot the guest with *images* as virtio disks vda, vdb, ... and *initrd*; returns its console
    text (the guest powers off when its init is done). Raises RuntimeError without a kernel."""
    found = kernel()
    if found is None:
        raise RuntimeError("no /boot/vmlinuz-*: run tools/setup.sh (linux-image-cloud-amd64)")
    vmlinuz, _ = found
    # TCG, not KVM: nested KVM is unreliable on CI VMs (this one hangs), and TCG boots in ~6 s.
    drives: list[str] = []
    for img in images:
        drives += ["-drive", f"file={os.fspath(img)},format=raw,if=virtio,readonly={'off' if writable else 'on'}"]
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256M", "-nodefaults", "-nographic", "-no-reboot",
           "-serial", "stdio", "-kernel", str(vmlinuz), "-initrd", str(initrd),
           "-append", "console=ttyS0 panic=-1 quiet loglevel=3", *drives]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc.stdout.decode("utf-8", "replace").replace("\r", "") + proc.stderr.decode(errors="replace")[-1000:]


def kernel_listings(images: list[str | os.PathLike[str]], timeout: float = 300
                    ) -> list[tuple[dict[str, str | None], dict[str, int]]]:
    """What the kernel's vfat driver sees in each image: ({"/dir": None, "/dir/file": sha256 hex},
    {"/dir/file": mtime in s}).

    All images are checked in one guest boot (virtio disks vda, vdb, ...). Raises RuntimeError
    when the guest cannot mount an image or does not answer.
    """
    if not 1 <= len(images) <= 16:
        raise ValueError("1 to 16 images per guest")
    text = boot(images, initramfs(len(images)), timeout=timeout)
    bodies = [part.split(END, 1)[0] for part in text.split(BEGIN)[1:]]
    if len(bodies) != len(images) or END not in text:
        raise RuntimeError(f"guest did not list the images:\n{text[-3000:]}")
    out = []
    for body in bodies:
        if "MOUNT-FAILED" in body:
            raise RuntimeError(f"the guest kernel refused to mount the image:\n{body}")
        tree: dict[str, str | None] = {}
        mtimes: dict[str, int] = {}
        for line in body.splitlines():
            if line.startswith("D "):
                p = line[2:].lstrip(".")
                if p:
                    tree[p] = None
            elif line.startswith("F "):
                digest, _, p = line[2:].partition("  ")
                tree[p[1:]] = digest
            elif line.startswith("M "):
                secs, _, p = line[2:].partition(" ")
                mtimes[p[1:]] = int(secs)
        out.append((tree, mtimes))
    return out


def kernel_trees(images: list[str | os.PathLike[str]], timeout: float = 300) -> list[dict[str, str | None]]:
    """Only the trees of :func:`kernel_listings`."""
    return [tree for tree, _ in kernel_listings(images, timeout)]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def kernel_write_over_nbd(uri: str, name: str, data: bytes, timeout: float = 300) -> list[str]:
    """Boot a guest whose only disk is the NBD export *uri* (QEMU's NBD client, read-write); its
    kernel mounts it vfat, writes *data* as /*name*, lists the root and unmounts.

    Returns the names the guest listed. Raises RuntimeError when the guest cannot mount, write
    or unmount, or does not answer.
    """
    found = kernel()
    if found is None:
        raise RuntimeError("no /boot/vmlinuz-*: run tools/setup.sh (linux-image-cloud-amd64)")
    vmlinuz, _ = found
    initrd = initramfs(1, WRITE_INIT, files=(("payload", data), ("payload_name", name.encode())))
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256M", "-nodefaults", "-nographic", "-no-reboot",
           "-serial", "stdio", "-kernel", str(vmlinuz), "-initrd", str(initrd),
           "-append", "console=ttyS0 panic=-1 quiet loglevel=3",
           "-drive", f"file={uri},format=raw,if=virtio,cache=writethrough"]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    text = proc.stdout.decode("utf-8", "replace").replace("\r", "")
    if BEGIN not in text or END not in text:
        raise RuntimeError(f"guest did not answer (qemu status {proc.returncode}):\n{text[-2000:]}\n"
                           f"{proc.stderr.decode(errors='replace')[-1000:]}")
    body = text.split(BEGIN, 1)[1].split(END, 1)[0]
    if "MOUNT-FAILED" in body or "UMOUNT-OK" not in body:
        raise RuntimeError(f"the guest kernel could not mount, write and unmount the export:\n{body}")
    return [line[2:] for line in body.splitlines() if line.startswith("L ")]
