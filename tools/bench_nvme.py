#!/usr/bin/env python3
"""Benchmark: fsproto's NVMe driver vs baselines measured in the same run, printed as ratios.

qtest (no guest, seconds): one NVMe register read over the qtest socket vs one checked read of
host memory (the same Region API), and 128 KiB sequential reads through the driver vs
``os.pread`` of the same image file.

``--lab`` (a guest boot, a few minutes under TCG): in one guest, on the same emulated
controllers, the kernel ``nvme`` driver (128 KiB sequential reads with ``dd iflag=direct``, dd's
own clock; 4 KiB random reads at QD32 with fio) and then fsproto's driver at depth (128 KiB
reads as 2 MiB block-device requests, 16 commands in flight; 4 KiB random reads at QD32) through
uio_pci_generic and through vfio-pci (vIOMMU) with MSI-X interrupts and polled, each with the
CPU time it used.

    python tools/bench_nvme.py [--reads N] [--lab [--mib M]]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fsproto.hw.memory import malloc  # noqa: E402
from fsproto.hw.nvme import attach  # noqa: E402
from fsproto.hw.nvme.controller import NvmeController  # noqa: E402

CHUNK = 128 << 10


def per_call(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _i in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def qtest_bench(reads: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        img = os.path.join(d, "bench.img")
        with open(img, "wb") as f:
            f.truncate(reads * CHUNK)
        att = attach.qtest(img)
        try:
            ctrl = NvmeController(att.bar, att.pci, att.alloc)
            host = malloc(4096)
            reg = per_call(lambda: att.bar.r32(0x1C), 500)
            mem = per_call(lambda: host.region.r32(0x1C), 200_000)
            print(f"register read: qtest {reg * 1e6:.1f} us, host memory {mem * 1e9:.0f} ns, ratio {reg / mem:,.0f}x")
            buf = ctrl.alloc(CHUNK)
            blocks = CHUNK // 512

            def driver_pass() -> None:
                for i in range(reads):
                    ctrl.read(1, i * blocks, blocks, buf)
                    buf.read(0, CHUNK)

            fd = os.open(img, os.O_RDONLY)

            def pread_pass() -> None:
                for i in range(reads):
                    os.pread(fd, CHUNK, i * CHUNK)

            drv = per_call(driver_pass, 1)
            base = per_call(pread_pass, 1)
            os.close(fd)
            mb = reads * CHUNK / 1e6
            print(f"128 KiB sequential reads ({reads}): fsproto over qtest {mb / drv:.1f} MB/s, "
                  f"os.pread {mb / base:.0f} MB/s, ratio {drv / base:.1f}x slower "
                  f"({drv / reads * 1e3:.2f} ms per command)")
            ctrl.close()
            host.free()
        finally:
            att.close()


def lab_bench(mib: int) -> int:
    from fsproto.lab import Disk, run

    with tempfile.TemporaryDirectory() as d:
        imgs = [os.path.join(d, n) for n in ("uio.img", "vfio.img")]
        for p in imgs:
            with open(p, "wb") as f:
                f.truncate(max(mib, 8) << 20)
        cmd = (f"{sys.executable} -m fsproto.lab.selftest --depth-bench --bench-mib {mib} "
               "--uio 0000:00:04.0 --uio-serial B1 --vfio 0000:00:05.0 --vfio-serial B2")
        r = run(cmd, disks=[Disk(imgs[0], "nvme", "B1"), Disk(imgs[1], "nvme", "B2")], iommu=True, timeout=1500)
    f: dict[str, float] = {}
    for line in r.output.splitlines():
        parts = line.split()
        if parts[:1] == ["LAB-FIGURE"]:
            f[parts[1]] = float(parts[2])
        elif parts[:1] == ["LAB-CHECK"] and parts[2] != "PASS" or line.startswith(("SQ", "slots contiguous")):
            print(line)
    kernel = f.get("kernel_nvme_MBps")
    if not kernel:
        print(f"lab: no kernel figure (guest status {r.status}):\n{r.output[-3000:]}")
        return 1
    print(f"lab ({r.accel}, {mib} MiB per pass, same guest, same emulated controllers, one run):")
    print(f"  128 KiB sequential reads, kernel nvme (dd iflag=direct, QD1): {kernel:.1f} MB/s")
    if "kernel_128k_qd16_MBps" in f:
        print(f"  128 KiB sequential reads, kernel nvme (fio libaio QD16): {f['kernel_128k_qd16_MBps']:.1f} MB/s "
              "(fsproto ratios below are against dd, as the issue asks)")
    for key, what in (("fsproto_uio_poll", "uio, polled"), ("fsproto_vfio_irq", "vfio, MSI-X interrupts"),
                      ("fsproto_vfio_poll", "vfio, polled")):
        if f"{key}_MBps" in f:
            print(f"  128 KiB sequential reads, fsproto {what:<22}: driver {f[key + '_MBps']:.1f} MB/s, "
                  f"ratio fsproto/kernel {f[key + '_MBps'] / kernel:.2f}, CPU {f[key + '_cpu_s']:.2f} s "
                  f"of {f[key + '_wall_s']:.2f} s wall; block device (2 MiB reads, copied out) "
                  f"{f[key + '_dev_MBps']:.1f} MB/s, ratio {f[key + '_dev_MBps'] / kernel:.2f}")
    k4 = f.get("kernel_4k_qd32_iops")
    for key, what in (("fsproto_uio_4k_qd32_iops", "uio"), ("fsproto_vfio_4k_qd32_iops", "vfio")):
        if key in f and k4:
            print(f"  4 KiB random reads QD32: kernel (fio libaio) {k4:.0f} IOPS, fsproto {what} {f[key]:.0f} IOPS, "
                  f"ratio {f[key] / k4:.2f}")
    if "fsproto_vfio_irq_cpu_s" in f and "fsproto_vfio_poll_cpu_s" in f:
        print(f"  interrupts vs polling (vfio, same reads): CPU {f['fsproto_vfio_irq_cpu_s']:.2f} s vs "
              f"{f['fsproto_vfio_poll_cpu_s']:.2f} s, ratio {f['fsproto_vfio_irq_cpu_s'] / f['fsproto_vfio_poll_cpu_s']:.2f}")
    return 0 if r.status == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=64, help="128 KiB reads per qtest pass")
    ap.add_argument("--lab", action="store_true", help="also compare with the kernel driver in a lab guest")
    ap.add_argument("--mib", type=int, default=32, help="MiB read per driver in the lab")
    args = ap.parse_args()
    qtest_bench(args.reads)
    return lab_bench(args.mib) if args.lab else 0


if __name__ == "__main__":
    sys.exit(main())
