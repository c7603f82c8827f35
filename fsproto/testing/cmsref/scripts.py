"""The shell that runs inside the guest: ``/init`` and the helpers job scripts use.

Busybox ``ash`` only. The host talks to the guest through the 9p share mounted at ``/host``:

* in: ``/host/job.sh`` (the caller's script, with ``env`` exports in front), ``/host/in/``
  (``$IN``: input files);
* out: ``/host/booted`` (init reached the job), ``/host/disks`` (``DISKn=/dev/vdX`` lines),
  ``/host/output`` (the job's stdout+stderr), ``/host/rc`` (its exit status),
  ``/host/refused`` (a mount cmsfs-fuse refused: one line), ``/host/files/`` (``$OUT``).

Disks are found by their CCW device number (``fe.0.00NN`` with NN = 0x10 + index, set by
:mod:`fsproto.testing.cmsref.guest`), so ``$DISK0`` is always the first image whatever order
the kernel probes them in.
"""

from __future__ import annotations

DISK_DEVNO_BASE = 0x10

INIT = r"""#!/bin/busybox sh
# cmsref guest init: set up, run /host/job.sh, report through /host, power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/lib/s390x-linux-gnu:/usr/lib/s390x-linux-gnu
export HOME=/root TZ=UTC0
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo "cmsref: init"
for m in $(cat /etc/cmsref/modules); do
    insmod "/lib/modules/$(uname -r)/$m" || echo "cmsref: insmod $m failed"
done
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host0 /host; then
    echo "cmsref: cannot mount the 9p share host0"
    poweroff -f
fi
: > /host/disks
for b in /sys/block/vd*; do
    [ -e "$b" ] || continue
    p=$(readlink -f "$b/device/..")
    n=$(( 0x${p##*.} - 16 ))
    echo "DISK$n=/dev/${b##*/}" >> /host/disks
    eval "export DISK$n=/dev/${b##*/}"
done
echo "cmsref: booted"
echo booted > /host/booted
mkdir -p /host/files
cd /tmp
sh -c '. /etc/cmsref/lib.sh; . /host/job.sh' > /host/output 2>&1 < /dev/null
echo $? > /host/rc
for m in $(grep ' fuse' /proc/mounts | cut -d' ' -f2); do umount -l "$m"; done
sync
echo "cmsref: done"
umount /host
poweroff -f
"""

LIB = r"""# cmsref helpers for job scripts (sourced before the job; busybox ash).
OUT=/host/files
IN=/host/in
CMSREF_FAKETIME_LIB=/usr/lib/s390x-linux-gnu/faketime/libfaketime.so.1

_cmsref_log() { echo "/tmp/cmsfs$(echo "$1" | tr / _).log"; }

# cms_mount DEV MNT [cmsfs-fuse options...]: mount DEV at MNT with cmsfs-fuse running in the
# foreground (-f) in the background, so its messages are kept and the job goes on if it dies.
# A refused mount writes one line to /host/refused and ends the job with status 97.
# With CMSREF_FAKETIME set, the daemon's clock is frozen there (libfaketime).
cms_mount() {
    cms_try_mount "$@" && return 0
    cat /tmp/cmsref.refused > /host/refused
    exit 97
}

# cms_try_mount DEV MNT [options...]: as cms_mount, but a refusal returns 1 (the reason on
# stderr and in /tmp/cmsref.refused) and the job goes on.
cms_try_mount() {
    _dev=$1; _mnt=$2; shift 2
    mkdir -p "$_mnt"
    _log=$(_cmsref_log "$_mnt")
    if [ -n "$CMSREF_FAKETIME" ]; then
        LD_PRELOAD=$CMSREF_FAKETIME_LIB FAKETIME="$CMSREF_FAKETIME" FAKETIME_DONT_FAKE_MONOTONIC=1 \
            cmsfs-fuse -f "$@" "$_dev" "$_mnt" > "$_log" 2>&1 &
    else
        cmsfs-fuse -f "$@" "$_dev" "$_mnt" > "$_log" 2>&1 &
    fi
    _pid=$!
    echo "$_pid" > "$_log.pid"
    _i=0
    until grep -q " $_mnt fuse" /proc/mounts; do
        if ! kill -0 "$_pid" 2> /dev/null; then
            echo "cmsfs-fuse $* $_dev refused the mount: $(tr '\n' ' ' < "$_log")" > /tmp/cmsref.refused
            cat "$_log" >&2
            rm -f "$_log" "$_log.pid"
            return 1
        fi
        _i=$((_i + 1))
        if [ "$_i" -gt 600 ]; then
            echo "cmsfs-fuse $* $_dev did not mount within 60 s" > /tmp/cmsref.refused
            kill -9 "$_pid" 2> /dev/null
            return 1
        fi
        usleep 100000
    done
}

# cms_umount MNT: unmount, wait for the daemon, pass on what it printed (assertions...).
# Returns the daemon's exit status (0 for a clean unmount).
cms_umount() {
    _mnt=$1
    _log=$(_cmsref_log "$_mnt")
    umount "$_mnt" 2> /dev/null || umount -l "$_mnt"
    _pid=$(cat "$_log.pid")
    _rc=0
    wait "$_pid" || _rc=$?
    [ -s "$_log" ] && sed 's/^/cmsfs-fuse: /' "$_log" >&2
    rm -f "$_log" "$_log.pid"
    return $_rc
}

# cms_inspect DEV TAG: everything the reference shows of DEV, into $OUT/inspect-TAG/
# (read-only mounts in binary mode and with -a; parsed by fsproto.testing.cmsref.inspect).
cms_inspect() {
    _d=$OUT/inspect-$2
    mkdir -p "$_d"
    cms_mount "$1" /ib -o ro
    cms_mount "$1" /ia -o ro -a
    stat -f -c '%S %b %f %c %d' /ib > "$_d/statfs"
    (cd /ib && find . -mindepth 1 -maxdepth 1) > "$_d/order"
    if [ -s "$_d/order" ]; then
        # "|| :" everywhere: a job may run with set -e, and a failed read is a finding here
        (cd /ib && stat -c '%n|%s|%Y' -- *) > "$_d/stat.b" 2>> "$_d/errors" || :
        (cd /ia && stat -c '%n|%s|%Y' -- *) > "$_d/stat.a" 2>> "$_d/errors" || :
        for _x in record_format record_lrecl file_mode; do
            (cd /ib && getfattr -n "user.$_x" -- *) > "$_d/xattr.$_x" 2>> "$_d/errors" || :
        done
        (cd /ib && sha256sum -- *) > "$_d/sha.b" 2>> "$_d/errors" || :
        (cd /ia && sha256sum -- *) > "$_d/sha.a" 2>> "$_d/errors" || :
    fi
    _rc=0; cms_umount /ia 2>> "$_d/errors" || _rc=$?
    echo "a $_rc" > "$_d/daemons"
    _rc=0; cms_umount /ib 2>> "$_d/errors" || _rc=$?
    echo "b $_rc" >> "$_d/daemons"
}
"""
