"""The errno table of docs/errno.md, checked operation by operation on both formats.

One static C probe (tests/errno_probe/probe.c: one system call per line, no retrying wrapper)
runs the same script against

* FAT: the Linux kernel's own vfat driver (a QEMU guest, tests/fat_vm.py, one boot for the
  module) and fsproto's FUSE mount of an identical copy of the image (made by mkfs.vfat and
  mtools) -- both must give the errno the table's FAT column states;
* CMS: fsproto's FUSE mount, which must give the table's CMS column (POSIX's answer; there is
  no kernel CMS driver, and cmsfs-fuse answers EINVAL/ENOSYS for most of these).

Mounts are read-write with ``-o allow_other`` and the vfat owner/mask options, then read-only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fuse_helpers import PROJECT_ROOT, start_cli_mount

import fat_vm
from fsproto.cli import cli

pytestmark = [pytest.mark.mount, pytest.mark.timeout(600)]

DOC = PROJECT_ROOT / "docs" / "errno.md"
PROBE_SRC = Path(__file__).resolve().parent / "errno_probe" / "probe.c"
OPTS = "uid=1234,gid=4321,fmask=0133,dmask=0022"
N255 = "n" * 251 + ".txt"  # the longest FAT long name (255 UTF-16 units)
N256 = "n" * 252 + ".txt"
XDEV = "/fsproto-xdev-target"  # on another filesystem in both places (the guest's rootfs, the host's /)

# id -> (FAT op line, CMS op line); None where the case does not exist for the format. The
# order is the order they run in (mkdir creates, fill fills the directory, ...).
CASES: dict[str, tuple[str | None, str | None]] = {
    "create-longest-name": (f"creat\t{N255}", "creat\tABCDEFGH.ABCDEFGH"),
    "create-name-too-long": (f"creat\t{N256}", "creat\tABCDEFGHI.TXT"),
    "create-type-too-long": (None, "creat\tA.ABCDEFGHI"),
    "create-component-over-255": (f"creat\t{'m' * 300}", f"creat\t{'M' * 300}"),
    "stat-name-too-long": (f"stat\t{N256}", "stat\tABCDEFGHI.TXT"),
    "truncate-name-too-long": (f"truncate\t{N256}\t0", "truncate\tABCDEFGHI.TXT\t0"),
    "unlink-name-too-long": (f"unlink\t{N256}", "unlink\tABCDEFGHI.TXT"),
    "rename-to-name-too-long": (f"rename\tFILE.TXT\t{N256}", "rename\tFILE.TXT\tABCDEFGHI.TXT"),
    "mkdir-name-too-long": (f"mkdir\t{N256}", None),
    "create-invalid-character": ("creat\ta*b.txt", "creat\tA*B.TXT"),
    "create-invalid-colon": ("creat\ta:b.txt", "creat\tA:B:C.TXT"),
    "create-no-dot": (None, "creat\tNODOT"),
    "create-two-dots": (None, "creat\tA.B.C"),
    "stat-invalid-name": ("stat\ta*b.txt", "stat\tA*B.TXT"),
    "create-trailing-dot": ("creat\ttrail.", None),
    "stat-trailing-dot": ("stat\ttrail", None),
    "stat-with-trailing-dot": ("stat\tFILE.TXT.", None),
    "create-trailing-space": ("creat\tspace ", None),
    "stat-missing": ("stat\tMISSING.TXT", "stat\tMISSING.TXT"),
    "create-in-missing-directory": ("creat\tNODIR/X.TXT", "creat\tNODIR/X.TXT"),
    "stat-below-a-file": ("stat\tFILE.TXT/X.TXT", "stat\tFILE.TXT/X.TXT"),
    "mkdir": ("mkdir\tNEWDIR", "mkdir\tNEWDIR"),
    "mkdir-exists": ("mkdir\tDIR", "mkdir\tFILE.TXT"),
    "rmdir-not-empty": ("rmdir\tDIR", None),
    "rmdir-a-file": ("rmdir\tFILE.TXT", "rmdir\tFILE.TXT"),
    "unlink-a-directory": ("unlink\tDIR", None),
    "open-directory-for-writing": ("open_dir_w\tDIR", "open_dir_w\t."),
    "rename-into-itself": ("rename\tDIR\tDIR/SUB", None),
    "rename-file-over-directory": ("rename\tFILE.TXT\tDIR", None),
    "rename-directory-over-file": ("rename\tEMPTY\tFILE.TXT", None),
    "rename-over-non-empty-directory": ("rename\tEMPTY\tDIR", None),
    "rename-across-filesystems": (f"rename\tFILE.TXT\t{XDEV}", f"rename\tFILE.TXT\t{XDEV}"),
    "link": ("link\tFILE.TXT\tLINK.TXT", "link\tFILE.TXT\tLINK.TXT"),
    "symlink": ("symlink\tFILE.TXT\tSYM.TXT", "symlink\tFILE.TXT\tSYM.TXT"),
    "mkfifo": ("mkfifo\tFIFO.TXT", "mkfifo\tFIFO.TXT"),
    "truncate-past-format-maximum": ("truncate\tFILE.TXT\t4294967296", "truncate\tFILE.TXT\t1125899906842624"),
    "write-past-format-maximum": ("pwrite\tFILE.TXT\t4294967296", "pwrite\tFILE.TXT\t1125899906842624"),
    "truncate-past-free-space": ("truncate\tFILE.TXT\t4294967295", "truncate\tFILE.TXT\t67108864"),
    "chmod-unstorable-mode": ("chmod\tFILE.TXT\t0600", "chmod\tFILE.TXT\t0600"),
    "chmod-same-mode": ("chmod\tFILE.TXT\t0644", "chmod\tFILE.TXT\t0644"),
    "chown-other-owner": ("chown\tFILE.TXT\t1\t1", "chown\tFILE.TXT\t1\t1"),
    "utime-now": ("utime\tFILE.TXT", "utime\tFILE.TXT"),
    "stat-file-mode": ("mode\tFILE.TXT", "mode\tFILE.TXT"),
    "stat-read-only-file-mode": ("mode\tRO.TXT", None),
    "stat-directory-mode": ("mode\tDIR", "mode\t."),
    "fill-root-directory": ("fill\tF\t600", None),
    "create-in-full-root-directory": ("creat\tAFTER.TXT", None),
    "write-until-disk-full": ("fillfile\tBIG.BIN", "fillfile\tBIG.BIN"),
    "create-on-full-disk": (None, "fill\tFULL.\t5000"),
}
RO_CASES: dict[str, tuple[str | None, str | None]] = {
    "ro-create": ("creat\tNEW.TXT", "creat\tNEW.TXT"),
    "ro-open-for-writing": ("open_w\tFILE.TXT", "open_w\tFILE.TXT"),
    "ro-truncate": ("truncate\tFILE.TXT\t0", "truncate\tFILE.TXT\t0"),
    "ro-unlink": ("unlink\tFILE.TXT", "unlink\tFILE.TXT"),
    "ro-rename": ("rename\tFILE.TXT\tNEW.TXT", "rename\tFILE.TXT\tNEW.TXT"),
    "ro-mkdir": ("mkdir\tNEWDIR", "mkdir\tNEWDIR"),
    "ro-utime": ("utime\tFILE.TXT", "utime\tFILE.TXT"),
    "ro-read": ("open_r\tFILE.TXT", "open_r\tFILE.TXT"),
}


def doc_table() -> dict[str, tuple[str, str]]:
    """id -> (FAT, CMS) as docs/errno.md states them ("-" where the case does not apply)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\|\s*`([a-z0-9-]+)`\s*\|[^|]*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|", line)
        if m:
            rows[m.group(1)] = (_cell(m.group(2)), _cell(m.group(3)))
    return rows


def _cell(text: str) -> str:
    m = re.match(r"`([^`]*)`", text.strip())
    return m.group(1) if m else text.strip()


def script(cases: dict[str, tuple[str | None, str | None]], column: int) -> str:
    return "".join(f"{cid}\t{ops[column]}\n" for cid, ops in cases.items() if ops[column] is not None)


def parse(output: str) -> dict[str, str]:
    """Probe output -> id: result (``fill`` keeps only its errno; its count depends on long names)."""
    out = {}
    for line in output.splitlines():
        cid, _, result = line.partition(" ")
        out[cid] = result.split(" count=")[0]
    return out


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (tools/setup.sh installs it for pyfuse3)")
    out = tmp_path_factory.mktemp("probe") / "probe"
    subprocess.run(["gcc", "-O1", "-static", "-o", str(out), str(PROBE_SRC)], check=True, capture_output=True)
    return out


def _run_probe(probe: Path, mnt: Path, text: str, tmp: Path) -> dict[str, str]:
    path = tmp / "script"
    path.write_text(text)
    r = subprocess.run([str(probe), str(mnt), str(path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return parse(r.stdout)


def _fat_image(tmp: Path) -> Path:
    """FAT16 (a fixed 512-entry root directory) made and filled by dosfstools and mtools."""
    img = tmp / "ref.fat"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.vfat", "-F", "16", "-n", "ERRNO", str(img)], check=True, capture_output=True)
    data = tmp / "data.txt"
    data.write_bytes(b"some data\n")

    def m(*args: str) -> None:
        subprocess.run(list(args), check=True, capture_output=True, env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})

    m("mmd", "-i", str(img), "::DIR", "::EMPTY")
    for target in ("::FILE.TXT", "::RO.TXT", "::DIR/INNER.TXT"):
        m("mcopy", "-i", str(img), str(data), target)
    m("mattrib", "-i", str(img), "+r", "::RO.TXT")
    return img


def _cms_image(tmp: Path) -> Path:
    img = tmp / "ref.cms"
    assert cli(["mkfs", "--format", "cms", "--block-size", "1024", "--size", "1M", str(img)]) == 0
    data = tmp / "FILE.TXT"
    data.write_bytes(b"some data\n")
    assert cli(["put", str(img), str(data)]) == 0
    return img


GUEST_INIT = fat_vm.GUEST_PREAMBLE + """i=0; while [ ! -b /dev/vdb ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mkdir -p /mnt/rw /mnt/ro
echo @@BEGIN-RW@@
mount -t vfat -o rw,iocharset=utf8,codepage=437,OPTS /dev/vda /mnt/rw && /probe /mnt/rw /rw.script && umount /mnt/rw
echo @@BEGIN-RO@@
mount -t vfat -o ro,iocharset=utf8,codepage=437,OPTS /dev/vdb /mnt/ro && /probe /mnt/ro /ro.script && umount /mnt/ro
echo @@END@@
poweroff -f
""".replace("OPTS", OPTS)


@pytest.fixture(scope="module")
def fat_results(probe: Path, tmp_path_factory) -> dict[str, dict[str, str]]:
    """{"kernel": results, "fsproto": results} for the FAT column, one guest boot."""
    tmp = tmp_path_factory.mktemp("fat-errno")
    base = _fat_image(tmp)
    rw_script, ro_script = tmp / "rw.script", tmp / "ro.script"
    rw_script.write_text(script(CASES, 0))
    ro_script.write_text(script(RO_CASES, 0))
    kernel_rw, kernel_ro = tmp / "k-rw.fat", tmp / "k-ro.fat"
    shutil.copy(base, kernel_rw)
    shutil.copy(base, kernel_ro)
    initrd = fat_vm.initramfs(2, GUEST_INIT, (("/probe", str(probe)), ("/rw.script", str(rw_script)),
                                               ("/ro.script", str(ro_script))))
    text = fat_vm.boot([kernel_rw, kernel_ro], initrd, writable=True)
    if "@@END@@" not in text:
        raise AssertionError(f"the guest did not finish:\n{text[-3000:]}")
    rw_part, ro_part = text.split("@@BEGIN-RW@@", 1)[1].split("@@BEGIN-RO@@", 1)
    kernel = {**parse(rw_part), **parse(ro_part.split("@@END@@", 1)[0])}
    ours = _fsproto_results(probe, base, tmp, "fat", 0)
    return {"kernel": kernel, "fsproto": ours}


def _fsproto_results(probe: Path, base: Path, tmp: Path, fmt: str, column: int) -> dict[str, str]:
    results: dict[str, str] = {}
    for cases, name, extra in ((CASES, "rw", []), (RO_CASES, "ro", ["--ro"])):
        img = tmp / f"ours-{name}.{fmt}"
        shutil.copy(base, img)
        # Write-through: under the writeback cache (the default for FAT and CMS binary) the kernel
        # takes a write past the format's maximum into its page cache and only the writeback
        # fails (docs/errno.md); the table holds write(2)'s own answers.
        m = start_cli_mount(img, tmp / f"mnt-{name}", tmp / f"mount-{name}.log", "--format", fmt, *extra,
                            "-o", f"allow_other,no_writeback_cache,{OPTS}")
        try:
            results.update(_run_probe(probe, m.mountpoint, script(cases, column), tmp))
            m.unmount()
        finally:
            m.cleanup()
    return results


@pytest.fixture(scope="module")
def cms_results(probe: Path, tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("cms-errno")
    return _fsproto_results(probe, _cms_image(tmp), tmp, "cms", 1)


def _expected(column: int) -> dict[str, str]:
    table = doc_table()
    want = {}
    for cid, ops in {**CASES, **RO_CASES}.items():
        if ops[column] is not None:
            assert cid in table, f"docs/errno.md has no row for {cid}"
            want[cid] = table[cid][column]
    return want


def test_the_table_lists_every_case_and_nothing_else() -> None:
    table = doc_table()
    assert set(table) == set(CASES) | set(RO_CASES)
    for cid, (fat, cms) in table.items():
        ops = {**CASES, **RO_CASES}[cid]
        assert (fat == "-") == (ops[0] is None) and (cms == "-") == (ops[1] is None), cid


def test_kernel_vfat_gives_the_fat_column(fat_results) -> None:
    """The reference: if this fails, the table (not fsproto) is wrong about the kernel."""
    want = _expected(0)
    assert {k: fat_results["kernel"].get(k) for k in want} == want


def test_fsproto_fat_gives_the_fat_column(fat_results) -> None:
    want = _expected(0)
    assert {k: fat_results["fsproto"].get(k) for k in want} == want


def test_fsproto_cms_gives_the_cms_column(cms_results) -> None:
    want = _expected(1)
    assert {k: cms_results.get(k) for k in want} == want

