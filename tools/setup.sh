#!/bin/bash
# Install everything fsproto needs on a Debian 12 machine (as root), idempotently:
# system packages first (only the missing ones), then a venv with fsproto and its test extra.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
    # FUSE: pyfuse3 builds against libfuse3
    fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv
    # block-device tests: loop devices, partition tools, filesystems to mount, images
    util-linux fdisk gdisk dosfstools e2fsprogs mtools xz-utils attr
    # hardware core (qtest backend) and the VM lab
    qemu-system-x86 busybox-static gdb
    # a Linux kernel for QEMU guests: its vfat driver checks FAT images (the host kernel may lack it)
    linux-image-cloud-amd64
    # NBD serving and container images: nbdkit with its Python plugin, libnbd (nbdcopy, the
    # Python binding), qemu-nbd/qemu-img for qcow2, VMDK, VHDX, VDI
    nbdkit nbdkit-plugin-python python3-libnbd libnbd-bin qemu-utils
    # ewfacquire: the tests make E01/Ex01 images with it (the libewf-python wheel reads only)
    ewf-tools
    # the kernel-driver baseline of tools/bench_nvme.py --lab (4 KiB random reads at QD32)
    fio
)

missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.fsproto-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    touch "$stamp"
fi

# libnbd's Python binding exists only as Debian's python3-libnbd (not on PyPI), built for the
# system CPython 3.11; link its two files into the venv (same minor version, same ABI) rather
# than putting all of Debian's dist-packages on the venv's path.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
for f in /usr/lib/python3/dist-packages/nbd.py /usr/lib/python3/dist-packages/libnbdmod.cpython-311-*.so; do
    [ -e "$f" ] && ln -sf "$f" "$site/"
done
"$VENV/bin/python" -c 'import nbd' || { echo "setup: the venv cannot import libnbd's binding (nbd)" >&2; exit 1; }
