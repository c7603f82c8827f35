"""Checks that run *inside* a lab guest: the kernel NVMe driver as a baseline, then fsproto's own
drivers through uio_pci_generic and vfio-pci, a CMS filesystem made and FUSE-mounted on the
namespace, and AHCI through uio. ``python -m fsproto.lab.selftest --help``.

Output is line-oriented so the host can parse it from the serial console:
``LAB-CHECK <name> PASS|FAIL <detail>`` and ``LAB-FIGURE <name> <value>``. The host side
(``tests/test_lab.py``, ``tools/bench_nvme.py``) then checks the images offline.

Refuses to run outside a lab guest (``FSPROTO_PYTHON`` unset and no ``/run/lab``): it rebinds
PCI functions and would take disks away from a real machine.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import time
import traceback
from typing import Callable

CHUNK = 128 << 10
BENCH_BYTES = 8 << 20  # --bench-mib changes it (tools/bench_nvme.py reads more)
FILES = {"LAB1.DATA": b"written through FUSE in the lab guest\n", "LAB2.DATA": b"x" * 5000 + b"\n",
         "NOTES.TEXT": b"uio + pagemap DMA\n"}
VFIO_NOTE = b"put through nvme:vfio:\n"
PATTERN_LBA = 2048  # the vfio/ahci checks write here; the host compares the image


def pattern(n: int, seed: int) -> bytes:
    return bytes((i * 31 + seed + i // 512) & 0xFF for i in range(n))


def report(name: str, ok: bool, detail: str = "") -> None:
    print(f"LAB-CHECK {name} {'PASS' if ok else 'FAIL'} {detail}".rstrip(), flush=True)


def figure(name: str, value: float) -> None:
    print(f"LAB-FIGURE {name} {value:.6g}", flush=True)


def sh(cmd: str, timeout: float = 120) -> str:
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    if p.returncode:
        raise RuntimeError(f"`{cmd}` failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-300:]}")
    return p.stdout


def check(name: str, fn: Callable[[], str]) -> bool:
    try:
        detail = fn()
    except Exception as e:  # noqa: BLE001 - every failure becomes one FAIL line with its reason
        report(name, False, f"{type(e).__name__}: {e}")
        traceback.print_exc(file=sys.stdout)
        return False
    report(name, True, detail)
    return True


def rebind(bdf: str, driver: str) -> None:
    from fsproto.hw.pci import SysfsPci

    fn = SysfsPci(bdf)
    fn.rebind(driver, force=True)  # force: we take it from the kernel driver on purpose
    for _ in range(200):
        if fn.driver == driver:
            return
        time.sleep(0.02)
    raise RuntimeError(f"{bdf} is bound to {fn.driver}, not {driver}")


def kernel_baseline(bdf: str) -> str:
    sh("modprobe nvme")
    node = ""
    for _ in range(600):
        # nvme0n1 directly, or nvme<subsys>c<ctrl>n1 under native multipath (block node nvme<subsys>n1)
        for entry in glob.glob(f"/sys/bus/pci/devices/{bdf}/nvme/nvme*/nvme*n1"):
            m = re.fullmatch(r"nvme(\d+)(?:c\d+)?n1", os.path.basename(entry))
            if m and os.path.exists(f"/dev/nvme{m.group(1)}n1"):
                node = f"/dev/nvme{m.group(1)}n1"
        if node:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("the kernel nvme driver made no namespace block device")
    p = subprocess.run(["dd", f"if={node}", "of=/dev/null", "bs=128K", f"count={BENCH_BYTES // CHUNK}", "iflag=direct"],
                       capture_output=True, text=True, timeout=300)
    # dd's own clock (after exec and open), so process start-up under TCG is not counted.
    m = re.search(r"copied, ([0-9.e-]+) s", p.stderr)
    if p.returncode or not m:
        raise RuntimeError(f"dd failed: {p.stderr.strip()[-200:]}")
    dt = float(m.group(1))
    figure("kernel_nvme_MBps", BENCH_BYTES / dt / 1e6)
    return f"{node}: {BENCH_BYTES >> 20} MiB in {dt:.2f} s with dd iflag=direct bs=128K"


def kernel_random(bdf: str) -> str:
    """fio: 4 KiB random reads at QD32 through the kernel nvme driver (libaio, O_DIRECT)."""
    import json

    node = _kernel_node(bdf)
    if not shutil_which("fio"):
        raise RuntimeError("fio is not installed (tools/setup.sh installs it)")
    out = sh(f"fio --name=qd32 --filename={node} --rw=randread --bs=4k --iodepth=32 --ioengine=libaio --direct=1 "
             f"--io_size={RANDOM_IOS * 4096} --size={BENCH_BYTES} --randrepeat=1 --output-format=json", timeout=600)
    job = json.loads(out[out.index("{"):])["jobs"][0]
    iops = job["read"]["iops"]
    figure("kernel_4k_qd32_iops", iops)
    # The kernel at depth too, for the sequential figure: 128 KiB reads, 16 in flight.
    out = sh(f"fio --name=seq --filename={node} --rw=read --bs=128k --iodepth=16 --ioengine=libaio --direct=1 "
             f"--size={BENCH_BYTES} --output-format=json", timeout=600)
    bw = json.loads(out[out.index("{"):])["jobs"][0]["read"]["bw_bytes"]
    figure("kernel_128k_qd16_MBps", bw / 1e6)
    return f"{node}: fio randread 4 KiB QD32, {RANDOM_IOS} reads, {iops:.0f} IOPS; fio 128 KiB QD16 {bw / 1e6:.0f} MB/s"


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def _kernel_node(bdf: str) -> str:
    for entry in glob.glob(f"/sys/bus/pci/devices/{bdf}/nvme/nvme*/nvme*n1"):
        m = re.fullmatch(r"nvme(\d+)(?:c\d+)?n1", os.path.basename(entry))
        if m and os.path.exists(f"/dev/nvme{m.group(1)}n1"):
            return f"/dev/nvme{m.group(1)}n1"
    raise RuntimeError(f"no kernel block device for {bdf}")


RANDOM_IOS = 2048


def depth_bench(bdf: str, kind: str) -> str:
    """fsproto at depth: 128 KiB sequential reads as 2 MiB block-device requests (16 commands in
    flight), with interrupts and polled (vfio), and 4 KiB random reads at QD32 (one queue of 33)."""
    import random

    from fsproto.blockdev.nvme import NvmeBlockDevice
    from fsproto.hw.nvme import attach
    from fsproto.hw.nvme import commands as cmd
    from fsproto.hw.nvme.controller import PAGE, NvmeController
    from fsproto.hw.nvme.datapointers import PreparedPointers

    if kind == "vfio":
        sh("modprobe vfio-pci")
        rebind(bdf, "vfio-pci")
    else:
        sh("modprobe uio_pci_generic")
        rebind(bdf, "uio_pci_generic")
    detail = []
    modes = ["irq", "poll"] if kind == "vfio" else ["poll"]
    for mode in modes:
        att = attach.vfio(bdf, 0) if kind == "vfio" else attach.uio(bdf, 0)
        try:
            irqs = att.interrupts(4) if mode == "irq" else None
            ctrl = NvmeController(att.bar, att.pci, att.alloc, name=att.name, interrupts=irqs)
            dev = NvmeBlockDevice(ctrl, 1)
            step = 4096  # blocks: 2 MiB requests
            t, cpu = time.monotonic(), time.process_time()
            try:
                for lba in range(0, BENCH_BYTES // 512, step):
                    dev.read(lba, step)
            except Exception:
                # Diagnostics for the log: the data pointers of the slots and the SQEs sent.
                print("slots contiguous:", [p.contiguous for p in dev._prepared], "sgl:", ctrl.sgl)
                for q in ctrl.queues:
                    if q.commands:
                        for i in range(q.sq_tail):
                            print(f"SQ{q.qid}[{i}]", q.sq.read(i * 64, 64).hex())
                raise
            dt, dcpu = time.monotonic() - t, time.process_time() - cpu
            figure(f"fsproto_{kind}_{mode}_dev_MBps", BENCH_BYTES / dt / 1e6)
            # The driver alone, like dd iflag=direct: 16 reads in flight into fixed buffers, no copy.
            slots = [PreparedPointers(dev._bounce, k * CHUNK, CHUNK, PAGE, ctrl.alloc, ctrl.sgl) for k in range(16)]
            t, cpu = time.monotonic(), time.process_time()
            for lba in range(0, BENCH_BYTES // 512, 16 * (CHUNK // 512)):
                ctrl.run([ctrl.rw_request(cmd.NVM_READ, 1, lba + k * (CHUNK // 512), CHUNK // 512,
                                          pointers=slots[k].pointers(CHUNK)) for k in range(16)])
            dt, dcpu = time.monotonic() - t, time.process_time() - cpu
            for p in slots:
                p.free()
            figure(f"fsproto_{kind}_{mode}_MBps", BENCH_BYTES / dt / 1e6)
            figure(f"fsproto_{kind}_{mode}_cpu_s", dcpu)
            figure(f"fsproto_{kind}_{mode}_wall_s", dt)
            detail.append(f"{mode}: {BENCH_BYTES >> 20} MiB in {dt:.2f} s, CPU {dcpu:.2f} s")
            dev.close()
        finally:
            att.close()
    # 4 KiB random reads at QD32 (polled; the interrupt path is the same queue code).
    att = attach.vfio(bdf, 0) if kind == "vfio" else attach.uio(bdf, 0)
    try:
        ctrl = NvmeController(att.bar, att.pci, att.alloc, name=att.name, io_queues=1, io_entries=33)
        buf = ctrl.alloc(32 * 4096)
        rng = random.Random(1)
        blocks = BENCH_BYTES // 512
        reqs = [ctrl.rw_request(cmd.NVM_READ, 1, rng.randrange(0, blocks // 8) * 8, 8, buf, (i % 32) * 4096)
                for i in range(RANDOM_IOS)]
        t = time.monotonic()
        ctrl.run(reqs)
        dt = time.monotonic() - t
        figure(f"fsproto_{kind}_4k_qd32_iops", RANDOM_IOS / dt)
        detail.append(f"4 KiB QD32: {RANDOM_IOS / dt:.0f} IOPS (peak in flight {ctrl.io.peak})")
        ctrl.close()
    finally:
        att.close()
    return "; ".join(detail)


def uio_driver(bdf: str, serial: str) -> str:
    from fsproto.hw.nvme import attach
    from fsproto.hw.nvme.controller import NvmeController

    sh("modprobe uio_pci_generic")
    rebind(bdf, "uio_pci_generic")
    att = attach.uio(bdf, 0)
    try:
        left_enabled = int(att.bar.r32(0x14)) & 1  # CC.EN as the kernel driver left it
        ctrl = NvmeController(att.bar, att.pci, att.alloc, name=att.name)
        try:
            if ctrl.identify.serial != serial:
                raise RuntimeError(f"Identify serial {ctrl.identify.serial!r}, expected {serial!r}")
            buf = ctrl.alloc(CHUNK)
            data = pattern(CHUNK, 7)
            buf.write(0, data)
            ctrl.write(1, 64, CHUNK // 512, buf)
            buf.fill(0, CHUNK)
            ctrl.read(1, 64, CHUNK // 512, buf)
            if buf.read(0, CHUNK) != data:
                raise RuntimeError("read-back differs from what was written")
            t = time.monotonic()
            for i in range(BENCH_BYTES // CHUNK):
                ctrl.read(1, i * (CHUNK // 512), CHUNK // 512, buf)
            dt = time.monotonic() - t
            figure("fsproto_uio_MBps", BENCH_BYTES / dt / 1e6)
        finally:
            ctrl.close()
    finally:
        att.close()
    return f"CC.EN left {left_enabled} by the kernel; Identify SN {serial}; 128 KiB round trip; {BENCH_BYTES >> 20} MiB in {dt:.2f} s"


RANDOM_COMMANDS, RANDOM_SPAN = 1000, 8 << 20  # the interrupt-driven random run: commands, bytes of the disk


def random_model(seed: int = 16) -> bytes:
    """What the random run leaves in the first RANDOM_SPAN bytes (the host recomputes it)."""
    return bytes(_random_run(seed, None))


def _random_run(seed: int, ctrl, irqs=None) -> bytearray:  # type: ignore[no-untyped-def]
    """RANDOM_COMMANDS reads and writes of 1-64 blocks at random LBAs, 32 per batch (no two
    overlapping in a batch, so the outcome is defined), each read checked against the model."""
    import random

    from fsproto.hw.nvme import commands as cmd

    rng = random.Random(seed)
    model = bytearray(RANDOM_SPAN)
    blocks = RANDOM_SPAN // 512
    buf = ctrl.alloc(32 * 32768) if ctrl is not None else None
    done = 0
    while done < RANDOM_COMMANDS:
        batch, taken = [], []
        while len(batch) < min(32, RANDOM_COMMANDS - done):
            n = rng.randint(1, 64)
            lba = rng.randrange(0, blocks - n)
            if any(lba < b + m and b < lba + n for b, m in taken):
                continue
            taken.append((lba, n))
            batch.append((rng.random() < 0.5, lba, n, rng.randbytes(n * 512)))
        if ctrl is not None:
            reqs = []
            for k, (write, lba, n, data) in enumerate(batch):
                if write:
                    buf.write(k * 32768, data)
                reqs.append(ctrl.rw_request(cmd.NVM_WRITE if write else cmd.NVM_READ, 1, lba, n, buf, k * 32768))
            ctrl.run(reqs)
            for k, (write, lba, n, _data) in enumerate(batch):
                if not write and buf.read(k * 32768, n * 512) != model[lba * 512 : (lba + n) * 512]:
                    raise RuntimeError(f"read of {n} blocks at LBA {lba} differs from the model")
        for write, lba, n, data in batch:
            if write:
                model[lba * 512 : (lba + n) * 512] = data
        done += len(batch)
    return model


def vfio_interrupts(bdf: str, serial: str) -> str:
    from fsproto.hw.nvme import attach
    from fsproto.hw.nvme.controller import NvmeController

    sh("modprobe vfio-pci")
    rebind(bdf, "vfio-pci")
    att = attach.vfio(bdf, 0)
    try:
        irqs = att.interrupts(2)
        ctrl = NvmeController(att.bar, att.pci, att.alloc, name=att.name, interrupts=irqs)
        try:
            if ctrl.identify.serial != serial:
                raise RuntimeError(f"Identify serial {ctrl.identify.serial!r}, expected {serial!r}")
            t = time.monotonic()
            _random_run(16, ctrl, irqs)
            ctrl.flush(1)
            dt = time.monotonic() - t
            for i in irqs:
                i.consume()
            counts = [i.count for i in irqs]
            if not all(counts):
                raise RuntimeError(f"interrupts per queue {counts}: a vector never fired")
            figure("vfio_interrupts", sum(counts))
            in_proc = int(open("/proc/interrupts").read().count("vfio-msix"))
        finally:
            ctrl.close()
    finally:
        att.close()
    return (f"{RANDOM_COMMANDS} random reads/writes data-checked in {dt:.1f} s over {len(irqs)} queues; "
            f"MSI-X interrupts per queue {counts}; {in_proc} vfio-msix lines in /proc/interrupts")


def cms_over_fuse(bdf: str, mnt: str) -> str:
    spec = f"nvme:{bdf}/1"
    py = sys.executable
    sh(f"{py} -m fsproto mkfs --format cms --label LAB001 {spec}")
    sh("modprobe fuse")
    os.makedirs(mnt, exist_ok=True)
    # -f: the device's DMA memory and queues belong to one process (no daemon fork).
    log = open("/tmp/lab-mount.log", "w")
    proc = subprocess.Popen([py, "-m", "fsproto", "mount", "-f", spec, mnt], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            if os.path.ismount(mnt):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"mount exited with {proc.returncode}: {open('/tmp/lab-mount.log').read()[-300:]}")
            time.sleep(0.05)
        else:
            raise RuntimeError("the FUSE mount did not appear")
        for name, data in FILES.items():
            with open(os.path.join(mnt, name), "wb") as f:
                f.write(data)
        listed = sorted(os.listdir(mnt))
        for name, data in FILES.items():
            with open(os.path.join(mnt, name), "rb") as f:
                if f.read() != data:
                    raise RuntimeError(f"{name} reads back differently through the mount")
        sh(f"{py} -m fsproto umount {mnt}")
        proc.wait(timeout=60)
        if proc.returncode:
            raise RuntimeError(f"mount process exited with {proc.returncode}")
    finally:
        if proc.poll() is None:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
            proc.kill()
            proc.wait()
    out = sh(f"{py} -m fsproto ls {spec}").split()
    if sorted(out) != sorted(FILES):
        raise RuntimeError(f"fsproto ls after unmount shows {out}")
    return f"mkfs, FUSE mount, wrote {listed}, unmounted, ls agrees"


def vfio_driver(bdf: str, serial: str) -> str:
    from fsproto.hw.nvme import attach
    from fsproto.hw.nvme.controller import NvmeController

    sh("modprobe vfio-pci")
    rebind(bdf, "vfio-pci")
    att = attach.vfio(bdf, 0)
    try:
        ctrl = NvmeController(att.bar, att.pci, att.alloc, name=att.name)
        try:
            if ctrl.identify.serial != serial:
                raise RuntimeError(f"Identify serial {ctrl.identify.serial!r}, expected {serial!r}")
            buf = ctrl.alloc(CHUNK)
            data = pattern(CHUNK, 11)
            buf.write(0, data)
            ctrl.write(1, PATTERN_LBA, CHUNK // 512, buf)
            ctrl.flush(1)
            buf.fill(0, CHUNK)
            ctrl.read(1, PATTERN_LBA, CHUNK // 512, buf)
            if buf.read(0, CHUNK) != data:
                raise RuntimeError("read-back differs from what was written")
            iova = buf.device_addr(0)
            t = time.monotonic()
            for i in range(BENCH_BYTES // CHUNK):
                ctrl.read(1, i * (CHUNK // 512), CHUNK // 512, buf)
            figure("fsproto_vfio_MBps", BENCH_BYTES / (time.monotonic() - t) / 1e6)
        finally:
            ctrl.close()
    finally:
        att.close()
    # The same controller through the CLI spec (a fresh bring-up, vfio resets the function).
    spec, note = f"nvme:vfio:{bdf}/1", "/tmp/VFIO.NOTE"
    with open(note, "wb") as f:
        f.write(VFIO_NOTE)
    sh(f"{sys.executable} -m fsproto mkfs --format cms --label VFIO01 {spec} && "
       f"{sys.executable} -m fsproto put {spec} {note}")
    return (f"Identify SN {serial} through the vIOMMU; data at IOVA {iova:#x}; pattern at LBA {PATTERN_LBA}; "
            f"mkfs + put on {spec}")


def ahci_uio(bdf: str, serial: str) -> str:
    from fsproto.hw.ahci import AhciController
    from fsproto.hw.nvme import attach

    sh("modprobe uio_pci_generic")
    rebind(bdf, "uio_pci_generic")
    att = attach.uio(bdf, 5)
    try:
        hba = AhciController(att.bar, att.pci, att.alloc, name=att.name)
        try:
            port = hba.port(hba.first_disk_port())
            if port.identify.serial != serial:
                raise RuntimeError(f"IDENTIFY serial {port.identify.serial!r}, expected {serial!r}")
            buf = att.alloc(CHUNK)
            data = pattern(CHUNK, 13)
            buf.write(0, data)
            port.write(PATTERN_LBA, CHUNK // 512, buf)
            port.flush()
            buf.fill(0, CHUNK)
            port.read(PATTERN_LBA, CHUNK // 512, buf)
            if buf.read(0, CHUNK) != data:
                raise RuntimeError("read-back differs from what was written")
        finally:
            hba.close()
    finally:
        att.close()
    return f"IDENTIFY {port.identify.model} SN {serial}; READ/WRITE DMA EXT at LBA {PATTERN_LBA}"


def main(argv: list[str] | None = None) -> int:
    global BENCH_BYTES
    ap = argparse.ArgumentParser(prog="python -m fsproto.lab.selftest", description=__doc__.split("\n\n")[0])
    ap.add_argument("--uio", metavar="BDF", help="NVMe function for the kernel baseline, uio, mkfs and FUSE")
    ap.add_argument("--uio-serial", default="")
    ap.add_argument("--vfio", metavar="BDF", help="NVMe function to drive through vfio-pci (needs --iommu)")
    ap.add_argument("--vfio-serial", default="")
    ap.add_argument("--irq", metavar="BDF", help="NVMe function for the interrupt-driven random run (vfio-pci)")
    ap.add_argument("--irq-serial", default="")
    ap.add_argument("--ahci", metavar="BDF", help="AHCI function to drive through uio")
    ap.add_argument("--ahci-serial", default="")
    ap.add_argument("--bench-only", action="store_true", help="only the kernel-vs-fsproto read comparison")
    ap.add_argument("--depth-bench", action="store_true",
                    help="kernel dd + fio QD32 baselines, then fsproto at depth over uio and vfio (irq and polled)")
    ap.add_argument("--mnt", default="/tmp/lab-mnt")
    ap.add_argument("--bench-mib", type=int, default=BENCH_BYTES >> 20, help="MiB read by each driver (128 KiB reads)")
    args = ap.parse_args(argv)
    BENCH_BYTES = args.bench_mib << 20
    if not (os.environ.get("FSPROTO_PYTHON") and os.path.isdir("/run/lab")):
        print("selftest: refusing to run outside an fsproto lab guest (it rebinds PCI devices)", file=sys.stderr)
        return 2
    ok = True
    if args.uio and args.depth_bench:
        ok &= check("kernel-nvme", lambda: kernel_baseline(args.uio))
        ok &= check("kernel-4k-qd32", lambda: kernel_random(args.uio))
        ok &= check("depth-uio", lambda: depth_bench(args.uio, "uio"))
        if args.vfio:
            ok &= check("depth-vfio", lambda: depth_bench(args.vfio, "vfio"))
        return 0 if ok else 1
    if args.uio:
        ok &= check("kernel-nvme", lambda: kernel_baseline(args.uio))
        ok &= check("nvme-uio", lambda: uio_driver(args.uio, args.uio_serial))
        if not args.bench_only:
            ok &= check("cms-fuse", lambda: cms_over_fuse(args.uio, args.mnt))
    if args.vfio:
        ok &= check("nvme-vfio", lambda: vfio_driver(args.vfio, args.vfio_serial))
    if args.irq and not args.bench_only:
        ok &= check("nvme-vfio-irq", lambda: vfio_interrupts(args.irq, args.irq_serial))
    if args.ahci and not args.bench_only:
        ok &= check("ahci-uio", lambda: ahci_uio(args.ahci, args.ahci_serial))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
