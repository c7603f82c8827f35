"""The lab guest's initramfs: static busybox, the modules that reach the host's root over
virtio-9p, and an ``/init`` that mounts that root read-only, runs the command and powers off.

Written in Python as a newc cpio (kernel ``Documentation/driver-api/early-userspace/
buffer-format.rst``): no root, no host ``cpio``. ``/dev/console`` is in the archive so init has
a stdout before devtmpfs is mounted. The recipe is hardware.md 5's, verified there: 9p with
``multidevs=remap`` (the host root spans several filesystems) and ``cache=loose`` (imports),
tmpfs on /tmp, /run and /dev/shm for anything the guest writes, ``PYTHONDONTWRITEBYTECODE=1``.

Limits: the guest's ``/lib/modules`` is the lab kernel's tree (bind-mounted from the cache), so
``modprobe`` works but the host's own modules are hidden inside the guest.
"""

from __future__ import annotations

import gzip
import shlex
import shutil
import stat
from pathlib import Path

from fsproto.errors import HarnessSetupError
from fsproto.lab.kernel import GuestKernel

BEGIN = "@@FSPROTO-LAB-BEGIN@@"
END = "@@FSPROTO-LAB-END@@"
ROOT_MODULES = ["virtio_pci", "9pnet_virtio", "9p"]

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /$m || echo "lab-init: insmod $m failed"; done
mkdir -p /newroot
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /newroot; then
  echo "lab-init: cannot mount the host root over 9p"; poweroff -f
fi
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/shm 2>/dev/null; mount -t tmpfs shm /newroot/dev/shm 2>/dev/null
mount -t tmpfs tmp /newroot/tmp
mount -t tmpfs run /newroot/run
@SHARES@mount --bind /newroot@MODULES@ /newroot/lib/modules || echo "lab-init: cannot bind the lab kernel modules"
mkdir -p /newroot/run/lab
cp /lab/cmd.sh /newroot/run/lab/cmd.sh
echo @BEGIN@
chroot /newroot /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp \
  TERM=dumb LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 @ENV@ /bin/sh /run/lab/cmd.sh </dev/null
rc=$?
sync
echo "@END@ rc=$rc"
poweroff -f
"""


def _cpio(entries: list[tuple[str, int, bytes, tuple[int, int]]]) -> bytes:
    """newc stream of (path, st_mode, data, (rdev major, minor)) entries plus the trailer."""
    out = bytearray()
    for ino, (path, mode, data, rdev) in enumerate([*entries, ("TRAILER!!!", 0, b"", (0, 0))], start=1):
        name = path.encode() + b"\0"
        fields = (ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + name
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def build(kernel: GuestKernel, command: str, out: Path, *, env: dict[str, str] | None = None,
          shares: list[tuple[str, str]] | None = None) -> Path:
    """Write the gzip'ed initramfs that runs the shell *command* in the guest; returns *out*.

    *shares* are (9p mount tag, host path) pairs mounted read-only at the same path over the
    guest's own tmpfs (a checkout or venv under the host's /tmp would be hidden otherwise).

    Raises HarnessSetupError (no static busybox, a module missing from the kernel).
    """
    busybox = shutil.which("busybox")
    if busybox is None:
        raise HarnessSetupError("busybox is not installed: run tools/setup.sh (busybox-static)")
    blob = Path(busybox).read_bytes()
    if b"ld-linux" in blob[:4096]:  # a dynamic busybox cannot run before the root is mounted
        raise HarnessSetupError(f"{busybox} is dynamically linked: install busybox-static")
    entries: list[tuple[str, int, bytes, tuple[int, int]]] = []
    for d in ("bin", "dev", "proc", "sys", "lab", "newroot"):
        entries.append((d, stat.S_IFDIR | 0o755, b"", (0, 0)))
    entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)))
    entries.append(("bin/busybox", stat.S_IFREG | 0o755, blob, (0, 0)))
    order = kernel.load_order(ROOT_MODULES)
    names = []
    for ko in order:
        rel = "mod/" + ko.name.removesuffix(".xz")
        data = ko.read_bytes()
        if ko.suffix == ".xz":
            import lzma

            data = lzma.decompress(data)
        entries.append((rel, stat.S_IFREG | 0o644, data, (0, 0)))
        names.append(rel)
    if not any(n.endswith("/9p.ko") for n in names):
        raise HarnessSetupError(f"kernel {kernel.release} has no 9p module: the lab needs CONFIG_9P_FS=m")
    entries.insert(4, ("mod", stat.S_IFDIR | 0o755, b"", (0, 0)))
    entries.append(("modules.order", stat.S_IFREG | 0o644, ("\n".join(names) + "\n").encode(), (0, 0)))
    env_words = " ".join(shlex.quote(f"{k}={v}") for k, v in (env or {}).items())
    share_lines = "".join(
        f"mkdir -p {shlex.quote('/newroot' + path)}; mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,"
        f"msize=262144 {tag} {shlex.quote('/newroot' + path)} || echo 'lab-init: cannot mount {tag}'\n"
        for tag, path in (shares or []))
    init = (INIT.replace("@SHARES@", share_lines).replace("@MODULES@", shlex.quote(str(kernel.modules.parent))).replace("@BEGIN@", BEGIN)
            .replace("@END@", END).replace("@ENV@", env_words))
    entries.append(("init", stat.S_IFREG | 0o755, init.encode(), (0, 0)))
    entries.append(("lab/cmd.sh", stat.S_IFREG | 0o755, command.encode(), (0, 0)))
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_bytes(gzip.compress(_cpio(entries), compresslevel=1, mtime=0))
    tmp.replace(out)
    return out
