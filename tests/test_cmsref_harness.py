"""The reference harness itself (fsproto.testing.cmsref): preparing, booting, bad input.

Host-only checks first (label, ELF, cpio, the prepared initramfs), then a few guest boots
(~5 s each under TCG): a job's output, exit status, files and disks; a mount the reference
refuses; a guest that cannot boot; a job that overruns its timeout (QEMU killed and reaped).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from conftest import SHARED
from fsproto.errors import DeviceError, FormatError, GuestError, HarnessSetupError, ReferenceRefused, UsageError
from fsproto.testing import cmsref
from fsproto.testing.cmsref import apt
from fsproto.testing.cmsref.elf import ElfFile
from fsproto.testing.cmsref.initramfs import Archive

pytestmark = pytest.mark.reference

IMAGES = SHARED / "images" / "cms"


@pytest.fixture(scope="session")
def reference() -> cmsref.Prepared:
    """The prepared harness; a failure fails every test using it, with prepare's one line."""
    try:
        return cmsref.prepare()
    except HarnessSetupError as e:
        pytest.fail(f"cmsref prepare: {e}", pytrace=False)


def _image(name: str, tmp_path: Path) -> Path:
    src = IMAGES / f"{name}.img.xz"
    if not src.exists():
        pytest.skip(f"{src} is absent (shared images not provided)")
    dst = tmp_path / f"{name}.img"
    dst.write_bytes(lzma.decompress(src.read_bytes()))
    return dst


def read_newc(blob: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """A newc reader written from the format description, independent of Archive.cpio()."""
    out: dict[str, tuple[int, bytes, tuple[int, int]]] = {}
    pos = 0
    while True:
        assert blob[pos : pos + 6] == b"070701", f"bad magic at {pos}"
        f = [int(blob[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name = blob[pos + 110 : pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        data = blob[pos : pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            assert pos == len(blob)
            return out
        out[name] = (mode, data, (rmaj, rmin))


# --- host only ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["edf512-mixed", "edf1024-mixed", "edf2048-mixed", "edf4096-mixed"])
def test_block_size_read_from_the_label(name: str, tmp_path: Path) -> None:
    img = _image(name, tmp_path)
    manifest = json.loads((IMAGES / f"{name}.json").read_text())
    assert cmsref.cms_block_size(img) == manifest["block_size"]


def test_block_size_refuses_what_is_not_cms(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(FormatError, match="no CMS1 label"):
        cmsref.cms_block_size(junk)
    # a label that lies about its block size (4096 claimed, found at 2 x 1024) is not taken
    liar = bytearray(16384)
    liar[2048:2052] = b"\xc3\xd4\xe2\xf1"
    liar[2060:2064] = (4096).to_bytes(4, "big")
    (tmp_path / "liar.img").write_bytes(liar)
    with pytest.raises(FormatError):
        cmsref.cms_block_size(tmp_path / "liar.img")
    liar[2060:2064] = (1024).to_bytes(4, "big")
    (tmp_path / "liar.img").write_bytes(liar)
    assert cmsref.cms_block_size(tmp_path / "liar.img") == 1024
    with pytest.raises(DeviceError):
        cmsref.cms_block_size(tmp_path / "missing.img")


def test_cpio_archive_round_trips(tmp_path: Path) -> None:
    a = Archive()
    a.file("etc/x/hello", b"hello\n", 0o640)
    a.symlink("lib/ld64.so.1", "s390x-linux-gnu/ld64.so.1")
    a.chardev("dev/console", 5, 1)
    a.file("odd", b"abc")  # sizes not a multiple of 4 exercise the padding
    n = a.write_gz(tmp_path / "i.gz")
    blob = (tmp_path / "i.gz").read_bytes()
    assert len(blob) == n
    entries = read_newc(gzip.decompress(blob))
    assert list(entries) == ["etc", "etc/x", "etc/x/hello", "lib", "lib/ld64.so.1", "dev", "dev/console", "odd"]
    assert entries["etc/x/hello"] == (stat.S_IFREG | 0o640, b"hello\n", (0, 0))
    assert entries["lib/ld64.so.1"][1] == b"s390x-linux-gnu/ld64.so.1"
    assert stat.S_ISLNK(entries["lib/ld64.so.1"][0])
    assert stat.S_ISCHR(entries["dev/console"][0]) and entries["dev/console"][2] == (5, 1)
    assert stat.S_ISDIR(entries["etc/x"][0])


def test_elf_reader_on_the_guest_binaries(reference: cmsref.Prepared) -> None:
    root = reference.cache / "root"
    assert ElfFile(root / "usr/bin/cmsfs-fuse").needed() == ["libfuse.so.2", "libpthread.so.0", "libc.so.6"]
    assert ElfFile(root / "bin/busybox").needed() == []  # busybox-static
    nine_p = next((root / "lib/modules").rglob("fs/9p/9p.ko"))
    info = ElfFile(nine_p).modinfo()
    assert info["name"] == "9p" and "9pnet" in info["depends"].split(",")
    with pytest.raises(HarnessSetupError, match="not an ELF"):
        ElfFile(root / "etc/cmsfs-fuse/filetypes.conf")


def test_initramfs_holds_everything_the_reference_needs(reference: cmsref.Prepared) -> None:
    entries = read_newc(gzip.decompress(reference.initrd.read_bytes()))
    for need in [
        "init", "bin/busybox", "usr/bin/cmsfs-fuse", "usr/bin/getfattr", "usr/bin/setfattr",
        "lib/s390x-linux-gnu/libfuse.so.2", "lib/s390x-linux-gnu/ld64.so.1", "lib/ld64.so.1",
        "usr/lib/s390x-linux-gnu/gconv/IBM1047.so", "usr/lib/s390x-linux-gnu/gconv/ISO8859-1.so",
        "usr/lib/s390x-linux-gnu/gconv/gconv-modules", "etc/cmsfs-fuse/filetypes.conf",
        "usr/lib/s390x-linux-gnu/faketime/libfaketime.so.1", "dev/console",
    ]:
        assert need in entries, need
    # every DT_NEEDED of every ELF in the archive is satisfied inside the archive
    names = {Path(p).name for p in entries}
    for path, (mode, data, _dev) in entries.items():
        if stat.S_ISREG(mode) and data[:4] == b"\x7fELF" and not path.endswith(".ko"):
            tmp = reference.cache / "root" / path
            for soname in ElfFile(tmp.resolve()).needed():
                assert soname in names, f"{path} needs {soname}"
    modules = entries[next(p for p in entries if p.endswith("etc/cmsref/modules"))][1].decode().split()
    assert [Path(m).stem for m in modules][-1] == "9p" and "kernel/net/9p/9pnet.ko" in modules
    assert modules.index("kernel/net/9p/9pnet.ko") < modules.index("kernel/fs/9p/9p.ko")  # deps first


def test_prepare_is_idempotent_without_apt(reference: cmsref.Prepared, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fast path must not touch apt at all: any call to it now fails the test.
    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("prepare() went to apt although the cache is current")

    for fn in ("ensure_qemu", "ensure_s390x_arch", "download", "unpack", "apt_update"):
        monkeypatch.setattr(apt, fn, boom)
    again = cmsref.prepare(reference.cache)
    assert again.stamp == reference.stamp
    assert hashlib.sha256(again.initrd.read_bytes()).hexdigest() == reference.stamp["initrd_sha256"]


def test_unprepared_cache_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(HarnessSetupError, match="not prepared") as e:
        cmsref.load(tmp_path)
    assert "\n" not in str(e.value)


def test_missing_package_is_one_clear_line(reference: cmsref.Prepared, tmp_path: Path) -> None:
    with pytest.raises(HarnessSetupError) as e:
        apt.download(["fsproto-no-such-package"], tmp_path)
    assert "fsproto-no-such-package" in str(e.value) and "\n" not in str(e.value)


def test_backports_source_is_taken_from_the_archive_apt_uses(reference: cmsref.Prepared) -> None:
    sources = apt.configured_sources()
    codename = apt._codename()
    release = {uri for uri, suites in sources if codename in suites}
    assert release, "no configured source serves the release"
    if apt.SOURCES_FILE.exists():  # written by prepare: the same archive as the release's
        text = apt.SOURCES_FILE.read_text()
        assert f"Suites: {codename}-backports" in text
        assert any(f"URIs: {uri}" in text for uri in release)
    if any(f"{codename}-backports" in suites for _uri, suites in sources):
        assert apt.ensure_backports_source(codename) is False  # idempotent: nothing added twice


# --- guest boots ----------------------------------------------------------------------------------


def test_run_returns_output_status_files_and_disks(reference: cmsref.Prepared, tmp_path: Path) -> None:
    small, big = _image("edf512-mixed", tmp_path), _image("edf4096-mixed", tmp_path)
    before = hashlib.sha256(big.read_bytes()).hexdigest()
    script = r"""
echo "hello from $(uname -m)"
for d in "$DISK0" "$DISK1"; do
    echo "$d $(cat /sys/block/${d#/dev/}/queue/logical_block_size) ro=$(cat /sys/block/${d#/dev/}/ro)"
done
mkdir -p "$OUT/sub"
printf '\001\002\003' > "$OUT/sub/bytes.bin"
cms_mount "$DISK1" /m -o ro
ls /m > "$OUT/list"
cms_umount /m
exit 3
"""
    result = cmsref.run([cmsref.Disk(small), cmsref.Disk(big, read_only=True)], script, timeout=120)
    assert result.exit_code == 3
    lines = result.output.splitlines()
    assert lines[0] == "hello from s390x"
    assert lines[1].endswith(" 512 ro=0") and lines[2].endswith(" 4096 ro=1")
    assert result.files["sub/bytes.bin"] == b"\x01\x02\x03"
    manifest = json.loads((IMAGES / "edf4096-mixed.json").read_text())
    assert sorted(result.files["list"].decode().split()) == sorted(f"{f['name']}.{f['type']}" for f in manifest["files"])
    assert hashlib.sha256(big.read_bytes()).hexdigest() == before  # attached read-only, untouched
    assert "cmsref: booted" in result.console_tail


def test_refused_mount_is_one_line(reference: cmsref.Prepared, tmp_path: Path) -> None:
    img = _image("edf1024-mixed", tmp_path)
    data = bytearray(img.read_bytes())
    data[2048 + 16 : 2048 + 20] = (9).to_bytes(4, "big")  # ADTDOP 9: the reference accepts only 4 or 5
    img.write_bytes(data)
    with pytest.raises(ReferenceRefused) as e:
        cmsref.run([cmsref.Disk(img, read_only=True)], 'cms_mount "$DISK0" /m\necho mounted\n', timeout=120)
    assert "refused the mount" in str(e.value) and "\n" not in str(e.value)
    assert "cmsref: booted" in e.value.console_tail


def test_guest_that_does_not_boot(reference: cmsref.Prepared, tmp_path: Path) -> None:
    broken = tmp_path / "cache"
    broken.mkdir()
    shutil.copyfile(reference.kernel, broken / "vmlinuz")
    a = Archive()
    a.file("README", b"an initramfs without /init\n")
    a.write_gz(broken / "initrd.gz")
    stamp = dict(reference.stamp, initrd_sha256=hashlib.sha256((broken / "initrd.gz").read_bytes()).hexdigest())
    (broken / "stamp.json").write_text(json.dumps(stamp))
    img = _image("edf512-mixed", tmp_path)
    with pytest.raises(GuestError, match="did not boot") as e:
        cmsref.run([img], "true", timeout=120, cache=broken)
    assert "\n" not in str(e.value)
    assert "panic" in e.value.console_tail.lower()


def _my_qemu_children() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and comm.startswith("qemu-system"):
            found.append(int(entry.name))
    return found


@pytest.mark.timeout(120)
def test_timeout_kills_and_reaps_qemu(reference: cmsref.Prepared, tmp_path: Path) -> None:
    img = _image("edf512-mixed", tmp_path)
    # 25 s: the job normally starts after ~5 s; on a loaded machine the boot itself may be
    # what the timeout cuts, which must end the same way (GuestError, nothing left running).
    with pytest.raises(GuestError, match="did not (finish|boot) within 25 s") as e:
        cmsref.run([img], "echo sleeping; sleep 600", timeout=25)
    assert "sleeping" in str(e.value) or "did not boot" in str(e.value)
    assert _my_qemu_children() == []


def test_missing_image_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such image"):
        cmsref.run([tmp_path / "nope.img"], "true")


# --- tools/cmsref, in-process -------------------------------------------------------------------


def _tool() -> Any:
    """tools/cmsref as a module (it has no .py suffix, so the loader is named explicitly)."""
    import importlib.util
    from importlib.machinery import SourceFileLoader

    path = str(Path(__file__).resolve().parent.parent / "tools" / "cmsref")
    loader = SourceFileLoader("cmsref_tool", path)
    spec = importlib.util.spec_from_loader("cmsref_tool", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_tool_help_and_errors(reference: cmsref.Prepared, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tool = _tool()
    for args in (["--help"], ["prepare", "--help"], ["inspect", "--help"], ["run", "--help"]):
        assert tool.cli(args) == 0, args
    assert tool.cli(["prepare"]) == 0
    assert "cmsref: ready" in capsys.readouterr().out
    assert tool.cli(["inspect", str(tmp_path / "missing.img")]) == 16  # usage: no such image
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"cmsref: error: {tmp_path / 'missing.img'}: no such image file"]


def test_tool_inspect_json_and_run_status(reference: cmsref.Prepared, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    tool = _tool()
    img = _image("edf2048-mixed", tmp_path)
    assert tool.cli(["inspect", "--json", str(img)]) == 0
    views = json.loads(capsys.readouterr().out)
    manifest = json.loads((IMAGES / "edf2048-mixed.json").read_text())
    assert {f["path"]: f["sha256_binary"] for f in views[0]["files"]} == {
        f"{m['name']}.{m['type']}": m["sha256_binary"] for m in manifest["files"]
    }
    script = tmp_path / "job.sh"
    script.write_text('echo "disk $DISK0"\necho out > $OUT/x\nexit 5\n')
    out_dir = tmp_path / "out"
    assert tool.cli(["run", "--read-only", "--image", str(img), "--script", str(script), "--out", str(out_dir)]) == 5
    assert capsys.readouterr().out == "disk /dev/vda\n"
    assert (out_dir / "x").read_text() == "out\n"
