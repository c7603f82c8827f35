"""``--json`` for ls, info, fsck and dump parses, and agrees field by field with the table/text
output, on the shared cmsfs-fuse images (copied to a temp dir), a FAT image written by mtools,
a damaged copy (fsck problems) and a partitioned image made by sfdisk. The tables stay the
default; the CMS listing also matches the images' manifests."""

from __future__ import annotations

import json
import lzma
import re
import subprocess
from pathlib import Path

import pytest

from conftest import SHARED
from fsproto.cli import cli

IMAGES = SHARED / "images" / "cms"
MANIFESTS = sorted(IMAGES.glob("*.json")) if IMAGES.is_dir() else []
needs_images = pytest.mark.skipif(not MANIFESTS, reason="../shared/images/cms is absent")


def run(capsys: pytest.CaptureFixture[str], *argv: str, status: int = 0) -> str:
    capsys.readouterr()
    assert cli(list(argv)) == status
    return capsys.readouterr().out


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def parse_ls_table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """Columns of ``ls -l``: the name (may hold spaces) first, the date (19 characters) last, the
    ones between right-aligned and blank-free."""
    lines = text.splitlines()
    headers = lines[0].split()
    rows = []
    for line in lines[1:]:
        rest, modified = line[:-19].rstrip(), line[-19:]
        parts = rest.rsplit(None, len(headers) - 2)
        # An empty extra cell (a column another entry has) shifts the split: none here.
        assert len(parts) == len(headers) - 1, line
        rows.append(dict(zip(headers, [*parts, modified])))
    return headers, rows


def check_ls_agrees(capsys: pytest.CaptureFixture[str], device: str, path: str = "/") -> list[dict]:
    headers, rows = parse_ls_table(run(capsys, "ls", "-l", device, path))
    objs = json_lines(run(capsys, "ls", "--json", device, path))
    assert len(objs) == len(rows) > 0
    for obj, row in zip(objs, rows):
        assert row["name"] == obj["name"] + ("/" if obj["is_dir"] else "")
        assert row["size"] == str(obj["size"])
        assert row["modified"] == obj["modified"]
        for k in headers[1:-2]:
            assert row[k] == obj["extra"][k], (k, row)
        assert set(obj["extra"]) == set(headers[1:-2])
    short = run(capsys, "ls", device, path).splitlines()
    assert short == [o["name"] + ("/" if o["is_dir"] else "") for o in objs]
    return objs


@pytest.fixture(scope="module", params=[m.stem for m in MANIFESTS])
def cms_image(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    manifest = json.loads((IMAGES / f"{request.param}.json").read_text())
    img = tmp_path_factory.mktemp("cmsjson") / f"{request.param}.img"
    img.write_bytes(lzma.decompress((IMAGES / manifest["image"]).read_bytes()))
    return manifest, img


@needs_images
def test_ls_json_agrees_with_table_and_manifest(cms_image: tuple[dict, Path], capsys, utc) -> None:
    manifest, img = cms_image
    objs = {o["name"]: o for o in check_ls_agrees(capsys, str(img))}
    assert sorted(objs) == sorted(f"{f['name']}.{f['type']}" for f in manifest["files"])
    for f in manifest["files"]:
        o = objs[f"{f['name']}.{f['type']}"]
        assert (o["size"], o["modified"]) == (f["size_binary"], f["date"]), f["name"]
        assert o["extra"]["recfm"] == f["recfm"] and o["extra"]["mode"] == f["mode"]
        assert (int(o["extra"]["lrecl"]), int(o["extra"]["records"])) == (f["lrecl"], f["records"])


@needs_images
def test_dump_json_agrees_with_text(cms_image: tuple[dict, Path], capsys) -> None:
    manifest, img = cms_image
    text = run(capsys, "dump", str(img)).splitlines()
    data = json.loads(run(capsys, "dump", "--json", str(img)))
    assert text[0] == f"label at byte {data['label_offset']}:" and data["label_offset"] == manifest["label_offset"]
    label = dict(line.split(None, 1) for line in text[1 : 1 + len(data["label"])])
    assert label == {k: repr(v) if k == "ADTID" else str(v) for k, v in data["label"].items()}
    assert data["label"]["ADTID"] == manifest["label"] and data["label"]["ADTUSED"] == manifest["used_blocks"]
    d = data["directory"]
    assert d["records"] == manifest["directory"]["records"]
    slot_lines = [line for line in text if re.match(r"\s+\d+\s", line)]
    assert len(slot_lines) == len(d["slots"])
    for line, s in zip(slot_lines, d["slots"]):
        fields = line.split()
        assert fields[0] == str(s["slot"]) and fields[1] == s["name"]
        assert fields[-2:] == s["date"].split()
        assert fields[-7:-2] == [str(s[k]) for k in ("records", "data_blocks", "levels", "ptr_size", "fop")]
    by_name = {s["name"]: s for s in d["slots"]}
    for f in manifest["files"]:
        s = by_name[f"{f['name']}.{f['type']}"]
        assert (s["slot"], s["fop"], s["data_blocks"], s["levels"]) == (
            f["fst"]["slot"], f["fst"]["fop"], f["fst"]["data_blocks"], f["fst"]["levels"])
    # One file's pointer tree: the largest V file (a multi-level tree on the mixed images).
    v = max((f for f in manifest["files"] if f["recfm"] == "V"), key=lambda f: f["fst"]["data_blocks"])
    vname = f"{v['name']}.{v['type']}"
    ftext = run(capsys, "dump", str(img), vname)
    fdata = json.loads(run(capsys, "dump", "--json", str(img), vname))["file"]
    assert f"{fdata['name']}: FOP {fdata['fop']}, {fdata['levels']} level(s), {fdata['data_block_count']} data blocks" \
        in ftext
    leaf_lines = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+|none)$", ftext, re.M)
    assert leaf_lines == [(str(e["leaf"]), str(e["block"]), str(e["hi_record"]),
                           "none" if e["disp"] is None else str(e["disp"])) for e in fdata["leaves"]]


def check_fsck_agrees(capsys, device: str) -> dict:
    capsys.readouterr()
    status = cli(["fsck", device])
    text = capsys.readouterr().out.splitlines()
    assert cli(["fsck", "--json", device]) == status
    rec = json.loads(capsys.readouterr().out)
    assert rec["exit_status"] == status
    assert text[:-1] == [f"{p['severity']}: {p['code']}: {p['message']}" + (" [fixed]" if p["fixed"] else "")
                         for p in rec["problems"]]
    summary = ", ".join(f"{k} {v}" for k, v in rec["summary"].items())
    assert text[-1] == (f"{device}: {'clean' if rec['clean'] else 'NOT clean'}: {rec['errors']} error(s), "
                        f"{rec['fixed']} fixed" + (f"; {summary}" if summary else ""))
    return rec


@needs_images
def test_fsck_json_agrees_with_text(cms_image: tuple[dict, Path], capsys, tmp_path: Path) -> None:
    manifest, img = cms_image
    assert check_fsck_agrees(capsys, str(img))["clean"]
    # A damaged copy: the allocation map's first block zeroed (every file's blocks look free).
    bad = tmp_path / "bad.img"
    raw = bytearray(img.read_bytes())
    data = json.loads(run(capsys, "dump", "--json", str(img)))
    amap = data["directory"]["slots"][1]
    bs = manifest["block_size"]
    first = amap["fop"] if amap["levels"] == 0 else None
    if first is None:  # a map with a pointer level: zero the first block its pointer names
        first = int.from_bytes(raw[(amap["fop"] - 1) * bs : (amap["fop"] - 1) * bs + 4], "big")
    raw[(first - 1) * bs : first * bs] = bytes(bs)
    bad.write_bytes(raw)
    rec = check_fsck_agrees(capsys, str(bad))
    assert rec["problems"] and not rec["clean"]


@pytest.fixture(scope="module")
def fat_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FAT16 by mkfs.vfat, files and a directory written by mtools (long names with spaces)."""
    d = tmp_path_factory.mktemp("fatjson")
    img = d / "fat.img"
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.vfat", "-F", "16", str(img)], check=True, capture_output=True)
    src = d / "src"
    (src / "a dir").mkdir(parents=True)
    for i, size in enumerate((0, 1, 5000, 70_000)):
        (src / f"file {i} with spaces.txt").write_bytes(b"x" * size)
        (src / "a dir" / f"inner {i}.bin").write_bytes(b"y" * (size + 3))
    (src / "SHORT.TXT").write_bytes(b"short")
    subprocess.run(["mcopy", "-s", "-m", "-i", str(img), *map(str, sorted(src.iterdir())), "::/"], check=True)
    return img


def test_fat_ls_fsck_dump_json_agree(fat_image: Path, capsys) -> None:
    objs = check_ls_agrees(capsys, str(fat_image))
    assert {o["name"] for o in objs} >= {"a dir", "SHORT.TXT", "file 3 with spaces.txt"}
    assert next(o for o in objs if o["name"] == "a dir")["is_dir"]
    inner = check_ls_agrees(capsys, str(fat_image), "/a dir")
    assert {o["name"]: o["size"] for o in inner} == {f"inner {i}.bin": s + 3 for i, s in enumerate((0, 1, 5000, 70_000))}
    assert check_fsck_agrees(capsys, str(fat_image))["clean"]
    target = "/a dir/inner 3.bin"
    text = run(capsys, "dump", str(fat_image), target).splitlines()
    data = json.loads(run(capsys, "dump", "--json", str(fat_image), target))
    assert text[0] == f"FAT{data['fat_type']} on {data['device']}" and data["fat_type"] == 16
    boot = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in text[1 : 1 + len(data["boot"])]}
    for k, v in data["boot"].items():
        assert boot[k] == (repr(v) if isinstance(v, int) else repr(bytes.fromhex(v))), k
    f = data["file"]
    assert f["size"] == 70_003 and f"size {f['size']} first cluster {f['first_cluster']}" in text[-1 - len(f["runs"])]
    assert [line.strip() for line in text[-len(f["runs"]):]] == [
        f"clusters {r['first']}..{r['first'] + r['count'] - 1} (file clusters {r['file_cluster']}.."
        f"{r['file_cluster'] + r['count'] - 1})" for r in f["runs"]]


def test_info_json_agrees_with_text(tmp_path: Path, capsys) -> None:
    img = tmp_path / "mbr.img"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["sfdisk", "-q", str(img)], input="label: dos\n,8M,83,*\n,8M,82\n,,5\n,4M,83\n", text=True,
                   check=True, capture_output=True)
    text = run(capsys, "info", str(img))
    rec = json.loads(run(capsys, "info", "--json", str(img)))
    assert f"device:      {rec['device']} ({rec['kind']})" in text
    assert f"size:        {rec['size']} bytes" in text
    assert f"sector size: {rec['sector_size']} bytes, {rec['sectors']} sectors" in text
    table = rec["partition_table"]
    assert table["scheme"] == "mbr" and table["disk_id"] in text
    sf = json.loads(subprocess.run(["sfdisk", "--json", str(img)], check=True, capture_output=True,
                                   text=True).stdout)["partitiontable"]["partitions"]
    assert [(p["start"], p["sectors"]) for p in table["partitions"]] == [(p["start"], p["size"]) for p in sf]
    rows = {int(m[0]): [int(x) for x in m[1:]] for m in re.findall(r"^\W*(\d+)\W+(\d+)\W+(\d+)\W+(\d+)\W", text, re.M)}
    for p in table["partitions"]:
        assert rows[p["number"]] == [p["start"], p["end"], p["sectors"]]
    plain = tmp_path / "plain.img"
    plain.write_bytes(bytes(1 << 20))
    assert json.loads(run(capsys, "info", "--json", str(plain)))["partition_table"] is None
    assert "partitions:  none" in run(capsys, "info", str(plain))
