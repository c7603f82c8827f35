"""The VM lab: how the guest is built and reaped (no boot needed), the exit status and output of
a guest command, the timeout path, and the one CI session (one guest boot for every in-guest
check: kernel driver baseline, fsproto over uio and vfio, CMS mkfs + FUSE mount, AHCI), whose
results the host then confirms offline in the image files.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT
from fsproto.cli import cli
from fsproto.errors import GuestError, UsageError
from fsproto.lab import guest, initramfs, kernel
from fsproto.lab.selftest import FILES, PATTERN_LBA, RANDOM_COMMANDS, RANDOM_SPAN, VFIO_NOTE, pattern, random_model

HAVE_QEMU = shutil.which("qemu-system-x86_64") is not None and shutil.which("busybox") is not None
needs_guest = [
    pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-x86 and busybox-static (tools/setup.sh)"),
    pytest.mark.slow,
]


def newc_members(blob: bytes) -> dict[str, bytes]:
    """Parse a newc archive back (the kernel's unpacker format) into {path: data}."""
    out, pos = {}, 0
    while True:
        assert blob[pos : pos + 6] == b"070701"
        fields = [int(blob[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name = blob[pos + 110 : pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        data = blob[pos : pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = data


@pytest.fixture(scope="module")
def lab_kernel():
    if not HAVE_QEMU:
        pytest.skip("needs qemu-system-x86 and busybox-static")
    return kernel.prepare(log=lambda _m: None)


@pytest.mark.skipif(not HAVE_QEMU, reason="needs busybox-static and the lab kernel")
def test_initramfs_holds_init_command_and_root_modules(lab_kernel, tmp_path):
    out = initramfs.build(lab_kernel, "echo hi\n", tmp_path / "i.gz", env={"A": "b c"})
    members = newc_members(gzip.decompress(out.read_bytes()))
    assert members["lab/cmd.sh"] == b"echo hi\n"
    init = members["init"].decode()
    assert initramfs.BEGIN in init and initramfs.END in init and "'A=b c'" in init and "poweroff -f" in init
    mods = members["modules.order"].decode().split()
    assert mods[-1] == "mod/9p.ko" and all(m in members for m in mods)
    assert members["bin/busybox"][:4] == b"\x7fELF" and "dev/console" in members


def test_qemu_command_places_disks_and_the_viommu(tmp_path):
    imgs = []
    for name in ("a.img", "b.img", "c.img"):
        (tmp_path / name).write_bytes(b"\0" * 4096)
        imgs.append(str(tmp_path / name))
    k = kernel.GuestKernel("x", tmp_path / "vmlinux", tmp_path)
    disks = [guest.Disk(imgs[0]), guest.Disk(imgs[1], "ahci"), guest.Disk(imgs[2], "nvme", "SN9")]
    argv, where = guest.qemu_command(k, tmp_path / "i.gz", disks, accel="tcg", iommu=True, memory_mb=512, smp=1)
    assert where == {imgs[0]: "0000:00:04.0", imgs[1]: "0000:00:1f.2", imgs[2]: "0000:00:05.0"}
    joined = " ".join(argv)
    assert "intel_iommu=on iommu=pt" in joined and "readonly=on" in joined and "-no-reboot" in argv
    assert argv.index("intel-iommu") < argv.index("nvme,serial=SN9,drive=disk2,addr=05.0")
    plain, _ = guest.qemu_command(k, tmp_path / "i.gz", disks[:1], accel="tcg", iommu=False, memory_mb=512, smp=1)
    assert "intel-iommu" not in plain and "intel_iommu=on" not in " ".join(plain)
    with pytest.raises(UsageError):
        guest.qemu_command(k, tmp_path / "i.gz", [guest.Disk(str(tmp_path / "missing.img"))], accel="tcg",
                           iommu=False, memory_mb=512, smp=1)
    with pytest.raises(UsageError):
        guest.Disk(imgs[0], "scsi")


def test_selftest_refuses_to_run_outside_a_guest(monkeypatch):
    from fsproto.lab import selftest

    monkeypatch.delenv("FSPROTO_PYTHON", raising=False)
    assert selftest.main(["--uio", "0000:00:04.0"]) == 2  # never rebinds a real machine's devices


@pytest.mark.usefixtures("lab_kernel")
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-x86 and busybox-static")
def test_cli_reports_the_guest_commands_status_and_output(capfd, tmp_path):
    rc = cli(["lab", "run", "--timeout", "120", "--", "echo from-the-guest; uname -r; exit 7"])
    out, err = capfd.readouterr()
    assert rc == 7
    assert "from-the-guest" in out and kernel.load().release in out
    assert "exited with status 7" in err
    script = tmp_path / "s.sh"  # under the host's /tmp, which the guest cannot see: sent in the initramfs
    script.write_text('echo "args: $1 $2"; test -e /run/lab/cmd.sh && exit 3\n')
    assert cli(["lab", "script", "--timeout", "120", str(script), "one", "two words"]) == 3
    assert "args: one two words" in capfd.readouterr().out


@pytest.mark.usefixtures("lab_kernel")
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-x86 and busybox-static")
def test_cli_runs_a_pytest_selection_in_the_guest(capfd):
    # Every test of the selection must pass in the guest, however many there are: count them
    # here (a bare "N passed" would also accept a run where most of them skipped).
    collected = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider",
                                "tests/test_nvme_prp.py"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    n = int(re.search(r"(\d+) tests? collected", collected.stdout).group(1))
    assert n >= 1, collected.stdout
    rc = cli(["lab", "pytest", "--timeout", "300", "tests/test_nvme_prp.py"])
    out, _err = capfd.readouterr()
    assert rc == 0, out[-2000:]
    assert re.search(rf"\b{n} passed", out) and "skipped" not in out, out[-2000:]
    assert "failed" not in out and "error" not in out


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-x86 and busybox-static")
def test_timeout_kills_only_the_guest(lab_kernel, monkeypatch):
    started = []

    class Recording(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*a, **kw)
            started.append(self)

    monkeypatch.setattr(guest.subprocess, "Popen", Recording)
    with pytest.raises(GuestError) as exc:
        guest.run("sleep 600", timeout=2)
    assert "within 2 s" in str(exc.value)
    (proc,) = started
    assert proc.poll() is not None  # QEMU reaped
    assert os.getpgid(0) != proc.pid  # it had its own group: ours was never signalled


# -- the one CI session ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def session(lab_kernel, tmp_path_factory):
    d = tmp_path_factory.mktemp("lab")
    imgs = {"uio": d / "uio.img", "vfio": d / "vfio.img", "irq": d / "irq.img", "ahci": d / "ahci.img"}
    for p in imgs.values():
        with open(p, "wb") as f:
            f.truncate(32 << 20)
    disks = [guest.Disk(str(imgs["uio"]), "nvme", "LAB-UIO"), guest.Disk(str(imgs["vfio"]), "nvme", "LAB-VFIO"),
             guest.Disk(str(imgs["irq"]), "nvme", "LAB-IRQ"), guest.Disk(str(imgs["ahci"]), "ahci", "LAB-SATA")]
    cmd = (f"{sys.executable} -m fsproto.lab.selftest --uio 0000:00:04.0 --uio-serial LAB-UIO "
           "--vfio 0000:00:05.0 --vfio-serial LAB-VFIO --irq 0000:00:06.0 --irq-serial LAB-IRQ "
           "--ahci 0000:00:1f.2 --ahci-serial LAB-SATA")
    result = guest.run(cmd, disks=disks, iommu=True, timeout=400)
    checks = {}
    for line in result.output.splitlines():
        parts = line.split(" ", 3)
        if parts[0] == "LAB-CHECK":
            checks[parts[1]] = (parts[2], parts[3] if len(parts) > 3 else "")
    return result, checks, imgs


def _passed(session, name):  # type: ignore[no-untyped-def]
    result, checks, _ = session
    assert name in checks, f"check {name} did not run:\n{result.output[-3000:]}"
    status, detail = checks[name]
    assert status == "PASS", f"{name}: {detail}\n{result.output[-3000:]}"
    return detail


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-x86 and busybox-static")
class TestLabSession:
    def test_kernel_driver_baseline(self, session):
        assert "dd iflag=direct" in _passed(session, "kernel-nvme")

    def test_uio_takes_over_a_controller_the_kernel_left_enabled(self, session):
        detail = _passed(session, "nvme-uio")
        assert "CC.EN left 1" in detail and "Identify SN LAB-UIO" in detail

    def test_cms_on_the_namespace_through_fuse_then_offline_on_the_host(self, session, capsys):
        _passed(session, "cms-fuse")
        img = str(session[2]["uio"])
        capsys.readouterr()
        assert cli(["ls", img]) == 0
        assert sorted(capsys.readouterr().out.split()) == sorted(FILES)  # exactly those files
        for name, data in FILES.items():
            assert cli(["cat", img, name]) == 0
            assert capsys.readouterr().out.encode() == data

    def test_vfio_through_the_viommu_then_the_data_is_in_the_image(self, session, capsys):
        assert "through the vIOMMU" in _passed(session, "nvme-vfio")
        img = str(session[2]["vfio"])
        with open(img, "rb") as f:
            f.seek(PATTERN_LBA * 512)
            assert f.read(128 << 10) == pattern(128 << 10, 11)
        capsys.readouterr()
        assert cli(["ls", img]) == 0 and capsys.readouterr().out.split() == ["VFIO.NOTE"]
        assert cli(["cat", img, "VFIO.NOTE"]) == 0 and capsys.readouterr().out.encode() == VFIO_NOTE

    def test_vfio_msix_interrupts_and_a_random_run_checked_in_the_image(self, session):
        detail = _passed(session, "nvme-vfio-irq")
        counts = [int(n) for n in re.search(r"MSI-X interrupts per queue \[([\d, ]+)\]", detail).group(1).split(",")]
        assert len(counts) == 2 and all(counts), detail  # both queues' vectors were delivered and counted
        assert f"{RANDOM_COMMANDS} random reads/writes data-checked" in detail
        with open(session[2]["irq"], "rb") as f:  # the host finds exactly the model's bytes
            assert f.read(RANDOM_SPAN) == random_model()

    def test_ahci_through_uio_then_the_data_is_in_the_image(self, session):
        assert "SN LAB-SATA" in _passed(session, "ahci-uio")
        with open(session[2]["ahci"], "rb") as f:
            f.seek(PATTERN_LBA * 512)
            assert f.read(128 << 10) == pattern(128 << 10, 13)

    def test_guest_command_status_is_reported(self, session):
        result, checks, _ = session
        assert result.status == (0 if all(s == "PASS" for s, _d in checks.values()) else 1)


def test_paths_under_the_guests_own_tmpfs_are_shared_again():
    """A CI checkout (and its venv) under /tmp would be hidden by the guest's tmpfs on /tmp."""
    from fsproto.lab.guest import hidden_shares

    shares = hidden_shares(["/tmp/ci/main", "/tmp/ci/main/.venv", "/work/main", "/run/x", "/tmp"])
    assert shares == [("share0", "/run/x"), ("share1", "/tmp/ci/main")]
    assert hidden_shares(["/work/main", "/root/.pyenv"]) == []
