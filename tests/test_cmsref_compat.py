"""Issue 9: fsproto and the reference (cmsfs-fuse in s390x emulation) read each other's disks.

For each block size, in ONE guest boot (boots are the expensive part under TCG):

* **fsproto -> reference**: fsproto mkfs + the common workload through the offline API
  (``fsp``), and a workload of things only fsproto can write (``ext``: overwrites, V records
  cut by truncate, >65535-byte writes); the reference lists and reads every file exactly as
  fsproto and the model say; fsproto's fsck is clean.
* **reference -> fsproto**: the reference runs the same common workload on a copy of the same
  fsproto-formatted empty disk (``ref``); fsproto reads every file as the reference itself
  reads it back; fsck finds no error (notices only: the reference's known stale counters).
* **twins**: ``fsp`` and ``ref`` are compared FST by FST; the fields that may differ (block
  numbers, because fsproto writes copy-on-write, and pointer blocks' placement) are masked.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fsproto.cli import cli
from fsproto.errors import HarnessSetupError
from fsproto.formats.cms import FORMAT
from fsproto.rawdev import ImageFile
from fsproto.testing import cmsref
from fsproto.testing.cmsref import workload as wl
from fsproto.testing.cmsref.compare import diff_views, fsproto_view

pytestmark = pytest.mark.reference

SIZES = (512, 1024, 2048, 4096)
IMAGE_BYTES = {512: 4 << 20, 1024: 4 << 20, 2048: 6 << 20, 4096: 8 << 20}
KINDS = ("fsp", "ref", "ext", "fuse")
FUSE_SIZES = (512, 4096)  # the FUSE workload (slower to apply) at the smallest and largest
CLOCK = wl.frozen_epoch()
# F80 files of 2 levels that the reference truncates by 37 records without harm
TREEF_RECORDS = {512: 1280, 1024: 3840, 2048: 13600}


def _records(rng: random.Random, sizes: list[int]) -> tuple[bytes, ...]:
    return tuple(rng.randbytes(n) for n in sizes)


def common_ops(bs: int) -> list[wl.Op]:
    """What both sides can do: F and V, text and binary, spanned records and split V headers,
    2- and 3-level trees, exact powers of the fan-out, empty files, modes, appends, shrinking
    truncates, renames, deletes (the last FST moves), and hundreds of files at 512."""
    rng = random.Random(bs)
    ppb_f, ppb_v = bs // 4, bs // 12
    ops: list[wl.Op] = [
        wl.Create("/PROFILE.EXEC"),
        wl.Text("/PROFILE.EXEC", "/* REXX */\n'CP QUERY TIME'\n\nsay 'caf\xe9 [1] ^x \xac'\n"),
        wl.Create("/README.TEXT", "F", 80),
        wl.Text("/README.TEXT", "".join(f"line {i:03d} of the readme\n" for i in range(30))),
        wl.Create("/SHORT.LISTING", "F", 133, "B2"),
        wl.Text("/SHORT.LISTING", "1 short\n" + "x" * 133 + "\n"),
        wl.Create("/ONEBYTE.DATA", "F", 1),
        wl.Records("/ONEBYTE.DATA", _records(rng, [3000])),
        wl.Create("/DOOMED.DATA"),
        wl.Records("/DOOMED.DATA", _records(rng, [10, 20])),
        wl.Create("/ODD.DATA", "F", 77, "A0"),
        wl.Records("/ODD.DATA", _records(rng, [77 * 50 + 10])),  # a partial record: zero-padded
        wl.Create("/SPLITHDR.DATA"),  # every 2-byte V header split 1+1 across a block boundary
        wl.Records("/SPLITHDR.DATA", _records(rng, [bs - 3] + [bs - 2] * 6)),
        wl.Create("/VARBIN.DATA"),
        wl.Records("/VARBIN.DATA", _records(rng, [rng.randint(1, 9000) for _ in range(12)] + [65535])),
        wl.Create("/TREEV.DATA"),  # V tree: 3 levels at 512, 2 elsewhere
        wl.Records("/TREEV.DATA", _records(rng, [2000] * (470 if bs == 512 else (ppb_v + 20) * bs // 2000 + 1))),
        wl.Create("/POWV.DATA"),  # exactly ppb_v data blocks: records of bs-2 fill one block each
        wl.Records("/POWV.DATA", _records(rng, [bs - 2] * ppb_v)),
        wl.Create("/EMPTY.V"),
        wl.Create("/EMPTY.F", "F", 80, "Z6"),
        wl.Create("/LONGLINE.SCRIPT"),
        wl.Text("/LONGLINE.SCRIPT", "a" * 300 + "\n" + "b\n"),
    ]
    if bs <= 2048:
        ops += [
            wl.Create("/TREEF.DATA", "F", 80),  # F tree of 2 levels (the fixtures' shapes)
            wl.Records("/TREEF.DATA", _records(rng, [80 * TREEF_RECORDS[bs]])),
            wl.Create("/POWF.DATA", "F", bs),  # exactly ppb_f data blocks: 2 levels by the rule
            wl.Records("/POWF.DATA", _records(rng, [bs * ppb_f])),
            wl.Truncate("/TREEF.DATA", 80 * (TREEF_RECORDS[bs] - 37)),
        ]
    ops += [
        wl.Text("/PROFILE.EXEC", "".join(f"say {i}\n" for i in range(15))),
        wl.Records("/VARBIN.DATA", _records(rng, [5, 500, 5000])),
        wl.Records("/ODD.DATA", _records(rng, [77 * 20])),
        wl.Truncate("/LONGLINE.SCRIPT", 0),
        wl.Rename("/ONEBYTE.DATA", "/ONE$BYTE.DAT#"),
        wl.Delete("/DOOMED.DATA"),
        wl.Create("/NEW@SLOT.TEXT"),
        wl.Text("/NEW@SLOT.TEXT", "new\n"),
    ]
    if bs == 512:  # hundreds of files: a directory with a pointer level
        for i in range(150):
            ops += [wl.Create(f"/F{i:03d}.DATA"), wl.Records(f"/F{i:03d}.DATA", _records(rng, [1 + i % 7, 3]))]
        ops += [wl.Delete(f"/F{i:03d}.DATA") for i in range(0, 150, 7)]
        ops += [wl.Rename(f"/F{i:03d}.DATA", f"/R{i:03d}.MOVED") for i in range(1, 150, 11) if i % 7]
    ops += [
        wl.Touch("/EMPTY.F", "1999-12-31 23:59:58"),
        wl.Touch("/PROFILE.EXEC", "2023-06-07 14:02:00"),
        wl.Touch("/ONE$BYTE.DAT#", "2000-01-01 00:00:00"),
    ]
    return ops


def extra_ops(bs: int) -> list[wl.Op]:
    """Only fsproto writes these (the reference cannot); the reference must read the result."""
    rng = random.Random(1000 + bs)
    return [
        wl.Create("/OVER.DATA"),
        wl.Records("/OVER.DATA", _records(rng, [100, 200, 300])),
        wl.Overwrite("/OVER.DATA", 50, b"X" * 200),  # across record boundaries, which stay
        wl.Overwrite("/OVER.DATA", 700, rng.randbytes(150_000)),  # a gap, then > 65535: split
        wl.Create("/CUT.DATA"),
        wl.Records("/CUT.DATA", _records(rng, [bs, bs * 2, 500])),
        wl.Truncate("/CUT.DATA", bs + 1234),  # a V record cut mid-file (the reference: EIO)
        wl.Create("/GROW.DATA"),
        wl.Records("/GROW.DATA", _records(rng, [10])),
        wl.Truncate("/GROW.DATA", 4000),  # truncate up: zero bytes
        wl.Create("/FIX.DATA", "F", 100),
        wl.Records("/FIX.DATA", _records(rng, [1000])),
        wl.Overwrite("/FIX.DATA", 450, b"\xff" * 120),
        wl.Truncate("/FIX.DATA", 555),  # not a record multiple: padded to 600
        wl.Create("/WIDE.DATA", "F", bs * 2 + 100),  # LRECL > block size, one record
        wl.Records("/WIDE.DATA", _records(rng, [bs * 2 + 100])),
        # the reference segfaults doing this truncate at 1024 (266 -> 264 blocks, 2 levels)
        wl.Create("/CRASHF.DATA", "F", 80),
        wl.Records("/CRASHF.DATA", _records(rng, [80 * ((bs // 4 + 10) * bs // 80)])),
        wl.Truncate("/CRASHF.DATA", 80 * ((bs // 4 + 10) * bs // 80 - 37)),
        wl.Create("/ALL256.DATA"),  # every byte value in one record: the code page's table
        wl.Records("/ALL256.DATA", (bytes(range(256)),)),
        wl.Create("/TEXT.SCRIPT"),
        wl.Text("/TEXT.SCRIPT", "".join(f"{i} [\xac^] caf\xe9\n" for i in range(400))),  # > 4 KiB of text
    ]


class MountedFs:
    """The subset of Filesystem that apply_fsproto uses, done with system calls on fsproto's
    own FUSE mount of the image (``fsproto mount``, a daemon; ``close`` unmounts)."""

    def __init__(self, image: Path, mountpoint: Path, text: bool) -> None:
        self.mnt = mountpoint
        mountpoint.mkdir(exist_ok=True)
        view = ["--text"] if text else ["--binary", "-o", "direct_io"]  # direct_io: one write, one record
        _fsproto("mount", *view, str(image), str(mountpoint))

    def _p(self, path: str) -> str:
        return str(self.mnt) + path

    def create(self, path: str) -> None:
        os.close(os.open(self._p(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))

    def setxattr(self, path: str, name: str, value: bytes) -> None:
        os.setxattr(self._p(path), name, value)

    def getxattr(self, path: str, name: str) -> bytes:
        return os.getxattr(self._p(path), name)

    def stat(self, path: str) -> os.stat_result:
        st = os.stat(self._p(path))
        return type("St", (), {"size": st.st_size})()  # apply_fsproto reads .size only

    def write(self, path: str, offset: int, data: bytes) -> int:
        fd = os.open(self._p(path), os.O_WRONLY)
        try:
            return os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def truncate(self, path: str, size: int) -> None:
        os.truncate(self._p(path), size)

    def rename(self, old: str, new: str) -> None:
        os.rename(self._p(old), self._p(new))

    def unlink(self, path: str) -> None:
        os.unlink(self._p(path))

    def set_mtime(self, path: str, mtime_ns: int) -> None:
        os.utime(self._p(path), ns=(mtime_ns, mtime_ns))

    def close(self) -> None:
        _fsproto("umount", str(self.mnt))


def _lazy_unmount(mnt: Path) -> None:
    with open("/proc/self/mountinfo") as f:
        mounted = any(line.split()[4] == str(mnt) for line in f)
    if mounted:
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, timeout=60)


def _fsproto(*args: str) -> None:
    """The real fsproto CLI in a child (the mount daemonizes; pytest must not fork)."""
    p = subprocess.run([sys.executable, "-m", "fsproto", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"fsproto {' '.join(args)}: {p.stderr.strip()}"


CLI_BS = 2048
CLI_TEXT = "".join(f"card {i:02d} [x] ^ \xac\n" for i in range(40))
CLI_BLOB = random.Random(9).randbytes(100 * 57 + 30)
CLI_VTEXT = "short\n\n" + "v" * 150 + "\n"


def cli_ops() -> list[wl.Op]:
    """What apply_cli does, as model ops (record boundaries of F and text files do not depend
    on how the CLI chunks its writes), then the dates it cannot set."""
    return [
        wl.Create("/README.TEXT", "F", 80, "B1"), wl.Text("/README.TEXT", CLI_TEXT),
        wl.Create("/BLOB.DATA", "F", 100), wl.Records("/BLOB.DATA", (CLI_BLOB,)),
        wl.Create("/NOTES.SCRIPT"), wl.Text("/NOTES.SCRIPT", CLI_VTEXT),
        wl.Create("/GONE.TEXT", "F", 80), wl.Text("/GONE.TEXT", "bye\n"),
        wl.Rename("/NOTES.SCRIPT", "/NOTES.EXEC"),
        wl.Delete("/GONE.TEXT"),
        *(wl.Touch(p, "2021-01-01 01:01:01") for p in ("/README.TEXT", "/BLOB.DATA", "/NOTES.EXEC")),
    ]


def apply_cli(image: Path, src: Path) -> None:
    """The offline verbs, in-process: put (text and binary, F and V), mv, rm."""
    src.mkdir()
    (src / "readme.txt").write_text(CLI_TEXT, encoding="utf-8")
    (src / "blob").write_bytes(CLI_BLOB)
    (src / "notes").write_text(CLI_VTEXT, encoding="utf-8")
    (src / "gone").write_text("bye\n")
    img = str(image)
    for args in (
        ["put", "--text", "--recfm", "F", "--lrecl", "80", "--mode", "B1", img, str(src / "readme.txt"), "--as", "README.TEXT"],
        ["put", "--binary", "--recfm", "F", "--lrecl", "100", img, str(src / "blob"), "--as", "BLOB.DATA"],
        ["put", "--text", img, str(src / "notes"), "--as", "NOTES.SCRIPT"],
        ["put", "--text", "--recfm", "F", "--lrecl", "80", img, str(src / "gone"), "--as", "GONE.TEXT"],
        ["mv", img, "NOTES.SCRIPT", "NOTES.EXEC"],
        ["rm", img, "GONE.TEXT"],
    ):
        assert cli(args) == 0, args
    # the CLI has no verb for dates: set them through the API, as cli_ops says
    with ImageFile(image, block_size=512, writable=True) as dev:
        fs = FORMAT.open(dev)
        for op in cli_ops():
            if isinstance(op, wl.Touch):
                fs.set_mtime(op.path, int(wl.frozen_epoch(op.date)) * 1_000_000_000)
        fs.close()


def fuse_ops(bs: int) -> list[wl.Op]:
    """The common workload, then every file dated: the FUSE daemon runs on the real clock."""
    ops = common_ops(bs)
    order, _files = wl.model(ops)
    dated = {op.path for op in ops if isinstance(op, wl.Touch)}
    return ops + [wl.Touch(p, "2022-02-22 22:22:22") for p in order if p not in dated]


def _diff(seen: list[dict[str, Any]], meant: list[dict[str, Any]], model: list[dict[str, Any]]) -> list[str]:
    """diff_views, strict: text too, including records that hold 0x15/0x25 (fsproto's cp1047
    maps them as the reference's glibc IBM-1047 does; test_newline_bytes_in_text_view)."""
    del model
    return diff_views(seen, meant)


# The reference's known failures, made on purpose on one disk (cms-edf.md, "Where the
# reference fails"; the F truncate crash is new, see docs/cms-reference.md).
BUG_BS = 1024
BUG_SCRIPT = r"""
set +e
cms_mount "$DISK" /bug -o big_writes,direct_io
dd if=$IN/bug/v of=/bug/CUTV.DATA bs=1000 iflag=fullblock 2> /dev/null
truncate -s 1500 /bug/CUTV.DATA; echo "vtruncate $?" >> $OUT/bug
cms_umount /bug; echo "vdaemon $?" >> $OUT/bug
cms_mount "$DISK" /bug -o big_writes,direct_io
touch /bug/CRASHF.DATA
setfattr -n user.record_format -v F /bug/CRASHF.DATA; setfattr -n user.record_lrecl -v 80 /bug/CRASHF.DATA
dd if=$IN/bug/f of=/bug/CRASHF.DATA bs=32720 iflag=fullblock conv=notrunc oflag=append 2> /dev/null
truncate -s 269360 /bug/CRASHF.DATA; echo "ftruncate $?" >> $OUT/bug
cms_umount /bug; echo "fdaemon $?" >> $OUT/bug
set -e
"""


# What the reference checks before it mounts (cms-edf.md, "The volume label"): offset in the
# label -> bytes that break it. "none" is the control: a disk both must accept.
LABEL_BREAKS = {
    "none": (0, b""),
    "magic": (0, b"\xc3\xd4\xe2\xf2"),  # CMS2
    "blocksize": (12, (3000).to_bytes(4, "big")),
    "dop": (16, (9).to_bytes(4, "big")),
    "fstsize": (36, (32).to_bytes(4, "big")),
    "fstperblock": (40, (8).to_bytes(4, "big")),
}


@pytest.fixture(scope="module")
def world(utc: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Build every disk, run the reference once over all of them, return images and views."""
    try:
        cmsref.prepare()
    except HarnessSetupError as e:
        pytest.fail(f"cmsref prepare: {e}", pytrace=False)
    tmp = tmp_path_factory.mktemp("cmsref-compat")
    images: dict[tuple[int, str], Path] = {}
    script = ["set -e"]
    inputs: dict[str, bytes] = {}
    for bs in SIZES:
        empty = tmp / f"empty{bs}.img"
        assert cli(["mkfs", "--format", "cms", "--block-size", str(bs), "--label", f"CR{bs}",
                    "--size", str(IMAGE_BYTES[bs]), str(empty)]) == 0
        for kind in KINDS:
            if kind == "fuse" and bs not in FUSE_SIZES:
                continue
            images[(bs, kind)] = tmp / f"{kind}{bs}.img"
            shutil.copyfile(empty, images[(bs, kind)])
        if bs == CLI_BS:
            images[(bs, "cli")] = tmp / f"cli{bs}.img"
            shutil.copyfile(empty, images[(bs, "cli")])
            apply_cli(images[(bs, "cli")], tmp / "cli-src")
        if bs in FUSE_SIZES:
            mnt = tmp / f"mnt{bs}"
            try:
                wl.apply_fsproto(lambda text, _i=images[(bs, "fuse")], _m=mnt: MountedFs(_i, _m, text), fuse_ops(bs))
            finally:  # never leave a mount behind, even when a step failed
                _lazy_unmount(mnt)
        for kind, ops in (("fsp", common_ops(bs)), ("ext", extra_ops(bs))):
            def open_fs(text: bool, _img: Path = images[(bs, kind)]) -> Any:
                dev = ImageFile(_img, block_size=512, writable=True)
                fs = FORMAT.open(dev, text=text, clock=lambda: CLOCK)
                real_close = fs.close

                def close() -> None:  # the filesystem does not close its device
                    real_close()
                    dev.close()

                fs.close = close  # type: ignore[method-assign]
                return fs

            wl.apply_fsproto(open_fs, ops)
    for name, (off, value) in LABEL_BREAKS.items():  # copies of a written disk, one label field broken
        img = images[(BUG_BS, f"inv-{name}")] = tmp / f"inv-{name}.img"
        data = bytearray(images[(BUG_BS, "fsp")].read_bytes())
        data[2 * BUG_BS + off : 2 * BUG_BS + off + len(value)] = value
        img.write_bytes(data)
    images[(BUG_BS, "bug")] = tmp / "bug.img"
    shutil.copyfile(tmp / f"empty{BUG_BS}.img", images[(BUG_BS, "bug")])
    disks = list(images)
    for i, (bs, kind) in enumerate(disks):
        if kind == "ref":
            text, ins = wl.to_shell(common_ops(bs), f"$DISK{i}", f"r{bs}")
            script.append(text)
            inputs.update(ins)
        elif kind.startswith("inv-"):
            script.append(f'if cms_try_mount "$DISK{i}" /inv -o ro; then echo "{kind} mounted" >> $OUT/inv; '
                          f'cms_umount /inv; else echo "{kind} refused" >> $OUT/inv; fi')
        elif kind == "bug":
            script.append(BUG_SCRIPT.replace("$DISK", f"$DISK{i}"))
            inputs["bug/v"] = random.Random(5).randbytes(3 * 1000)
            inputs["bug/f"] = random.Random(6).randbytes(80 * 3404)
    inspected = [d for d in disks if d[1] != "bug" and not d[1].startswith("inv-")]
    script += [f'cms_inspect "$DISK{disks.index(d)}" {disks.index(d)}' for d in inspected]
    start = time.monotonic()
    attach = [cmsref.Disk(images[d], block_size=d[0]) for d in disks]  # a broken label cannot tell
    result = cmsref.run(attach, "\n".join(script), inputs=inputs, timeout=600)
    seconds = time.monotonic() - start
    assert result.exit_code == 0, result.output[-3000:]
    views = {d: cmsref.parse_inspection(result.files, disks.index(d)) for d in inspected}
    print(f"\ncmsref compat: one boot, {len(disks)} disks, {seconds:.1f} s")
    return {"images": images, "views": views, "output": result.output, "files": result.files}


def _fsck(image: Path) -> Any:
    with ImageFile(image, block_size=512) as dev:
        return FORMAT.fsck(dev)


@pytest.mark.parametrize(
    ("bs", "kind"),
    [(bs, k) for k in ("fsp", "ext") for bs in SIZES] + [(bs, "fuse") for bs in FUSE_SIZES] + [(CLI_BS, "cli")],
)
def test_fsproto_to_reference(world: dict[str, Any], bs: int, kind: str) -> None:
    image = world["images"][(bs, kind)]
    ref = world["views"][(bs, kind)]
    assert ref["errors"] == [] and ref["daemon_exit"] == {"a": 0, "b": 0}, ref["errors"]
    assert ref["block_size"] == bs
    mine, extras = fsproto_view(image)
    want = wl.expected({"fsp": common_ops, "ext": extra_ops, "fuse": fuse_ops, "cli": lambda _bs: cli_ops()}[kind](bs))
    assert _diff(mine, want, want) == []  # fsproto did what the workload says
    assert _diff(ref["files"], mine, want) == []  # ... and the reference sees exactly that
    report = _fsck(image)
    assert report.clean and report.problems == [], [str(p) for p in report.problems]
    if kind in ("fsp", "fuse"):  # the workload reached the shapes it is meant to cover
        assert extras["TREEV.DATA"]["levels"] == ("3" if bs == 512 else "2")
        assert extras["POWV.DATA"]["levels"] == "2"  # exact power: the reference's extra level
        if bs <= 2048:
            assert extras["POWF.DATA"]["levels"] == "2" and extras["TREEF.DATA"]["levels"] == "2"


@pytest.mark.parametrize("bs", SIZES)
def test_reference_to_fsproto(world: dict[str, Any], bs: int) -> None:
    image = world["images"][(bs, "ref")]
    ref = world["views"][(bs, "ref")]
    assert ref["errors"] == [] and ref["daemon_exit"] == {"a": 0, "b": 0}, ref["errors"]
    want = wl.expected(common_ops(bs))
    assert _diff(ref["files"], want, want) == []  # the reference did what the workload says
    mine, _extras = fsproto_view(image)
    assert _diff(mine, ref["files"], want) == []  # ... and fsproto reads it as the reference wrote it
    report = _fsck(image)
    assert report.clean, [str(p) for p in report.problems]  # notices (stale counters) allowed


def test_newline_bytes_in_text_view(world: dict[str, Any]) -> None:
    """The -a view of a record holding all 256 byte values: the reference's table is the truth."""
    ref = {f["path"]: f for f in world["views"][(4096, "ext")]["files"]}["ALL256.DATA"]
    mine = {f["path"]: f for f in fsproto_view(world["images"][(4096, "ext")])[0]}["ALL256.DATA"]
    assert ref["text"]["size"] == mine["text"]["size"] == 257
    assert mine["text"]["sha256"] == ref["text"]["sha256"]


# Fields that may differ between twins, and why (docs/cms-reference.md, "Twins"):
TWIN_MASK_FST = {
    "fop": "block placement: fsproto writes copy-on-write into free blocks, the reference in place",
}
TWIN_MASK_DIRECTOR = {
    "data_blocks": "the reference never updates the DIRECTOR's data-block count (cms-edf.md); fsproto keeps it exact",
}
TWIN_MASK_LABEL = {
    "ADTAMNB": "allocation hint, never read or written by the reference",
    "ADTAMND": "allocation hint, never read or written by the reference",
    "ADTAMUP": "allocation hint, never read or written by the reference",
}


def _twin(image: Path) -> tuple[dict[str, Any], list[dict[str, Any]], bytes]:
    from fsproto.formats.cms.directory import Directory
    from fsproto.formats.cms.volume import Volume

    with ImageFile(image, block_size=512) as dev:
        vol = Volume.open(dev)
        d = Directory(vol)
        count = d.slots[0].records
        fsts = [dict(vars(f)) for f in d.slots[:count]]
        label = {k: v for k, v in vol.label.fields.items() if not k.startswith("_")}
    return label, fsts, image.read_bytes()


@pytest.mark.parametrize("bs", SIZES)
def test_twins(world: dict[str, Any], bs: int) -> None:
    """The same workload by fsproto and by the reference on copies of one empty disk: the label
    and every FST agree field by field, except the masked fields (each with its reason)."""
    label_a, fsts_a, raw_a = _twin(world["images"][(bs, "fsp")])
    label_b, fsts_b, raw_b = _twin(world["images"][(bs, "ref")])
    diffs = [f"label {k}: {label_a[k]} != {label_b[k]}" for k in label_a
             if k not in TWIN_MASK_LABEL and label_a[k] != label_b.get(k)]
    assert len(fsts_a) == len(fsts_b)
    for slot, (a, b) in enumerate(zip(fsts_a, fsts_b)):
        mask = set(TWIN_MASK_FST) | (set(TWIN_MASK_DIRECTOR) if slot == 0 else set())
        diffs += [f"slot {slot} {a['fname']!r}.{a['ftype']!r} {k}: {a[k]} != {b[k]}"
                  for k in a if k not in mask and a[k] != b[k]]
    assert diffs == []
    blocks = [i for i in range(0, len(raw_a), bs) if raw_a[i : i + bs] != raw_b[i : i + bs]]
    print(f"\ntwins {bs}: {len(blocks)} of {len(raw_a) // bs} blocks differ (placement); FSTs and label agree")


def test_reference_failures_leave_disks_fsck_reports(world: dict[str, Any]) -> None:
    """The reference fails as the spec says (V truncate past the first block: EIO; and the new
    F truncate crash); on what it leaves behind fsproto's fsck reports and nothing crashes."""
    from fsproto.errors import FsprotoError

    status = dict(line.split() for line in world["files"]["bug"].decode().splitlines())
    assert status["vtruncate"] != "0"  # EIO, as cms-edf.md lists
    assert status["ftruncate"] != "0" and status["fdaemon"] == "139"  # the daemon died of SIGSEGV
    image = world["images"][(BUG_BS, "bug")]
    report = _fsck(image)  # must return a report, not raise
    print("\nfsck of the disk the reference broke:", [str(p) for p in report.problems] or "clean")
    with ImageFile(image, block_size=512) as dev:
        try:
            fs = FORMAT.open(dev)
        except FsprotoError:
            return  # a typed refusal is a fine answer for a broken disk
        for st in fs.listdir("/"):
            try:
                fs.read("/" + st.name, 0, st.size)
            except FsprotoError:
                pass  # typed errors only: anything else fails the test
        fs.close()


@pytest.mark.parametrize("name", list(LABEL_BREAKS))
def test_fsck_accepts_what_the_reference_mounts(world: dict[str, Any], name: str) -> None:
    """Every label invariant the reference checks at mount time is one fsck checks too: a
    disk fsck accepts is a disk the reference mounts, and one it refuses fsck rejects."""
    from fsproto.errors import FsprotoError

    status = dict(line.split() for line in world["files"]["inv"].decode().splitlines())
    mounted = status[f"inv-{name}"] == "mounted"
    assert mounted == (name == "none")
    try:
        accepted = _fsck(world["images"][(BUG_BS, f"inv-{name}")]).clean
    except FsprotoError:
        accepted = False
    assert accepted == mounted
