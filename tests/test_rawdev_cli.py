"""The device commands in-process: info, hexdump, trace, write-blocks, overlay; every error path."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from fsproto.cli import cli
from fsproto.rawdev import open_device

MiB = 1024 * 1024


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    """16 MiB image with an sfdisk-made MBR (two primaries, one logical) and random data."""
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(16 * MiB))
    script = "label: dos\n,4M,83,*\n,2M,c\n,,5\n,4M,83\n"
    subprocess.run(["sfdisk", "-q", "--wipe", "never", str(path)], input=script, text=True, check=True,
                   capture_output=True)
    return path


def one_line_error(capsys, *needles: str) -> str:
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert lines[0].startswith("fsproto: error:") and "Traceback" not in cap.err + cap.out
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_info_lists_the_table_like_sfdisk(disk, capsys):
    assert cli(["info", str(disk)]) == 0
    out = capsys.readouterr().out
    assert "16777216 bytes" in out and "512 bytes, 32768 sectors" in out and "MBR partition table" in out
    dump = subprocess.run(["sfdisk", "-d", str(disk)], check=True, capture_output=True, text=True).stdout
    for line in dump.splitlines():
        if "start=" in line:  # e.g. "disk.img5 : start= 24576, size= 8192, type=83"
            fields = dict(f.strip().split("=") for f in line.split(":", 1)[1].split(",")[:2])
            number = line.split(":")[0].strip().rsplit("img", 1)[1]
            row = next(r for r in out.splitlines() if r.startswith(f"│ {number} "))
            assert fields["start"].strip() in row and fields["size"].strip() in row


def test_info_of_a_partition_both_spellings(disk, capsys):
    assert cli(["info", f"{disk}@5"]) == 0
    a = capsys.readouterr().out
    assert cli(["info", str(disk), "--partition", "5"]) == 0
    b = capsys.readouterr().out
    assert "partition 5 of" in a and "4194304 bytes" in a
    assert a.replace(f"{disk}@5", "X") == b.replace(f"{disk}@5", "X")


def test_hexdump_matches_hexdump_c(disk, capsys):
    assert cli(["hexdump", str(disk), "--lba", "0", "--count", "3"]) == 0
    ours = capsys.readouterr().out
    ref = subprocess.run(["hexdump", "-C", "-n", str(3 * 512), str(disk)], check=True, capture_output=True,
                         text=True).stdout
    assert ours == ref
    # Inside a partition, offsets are relative to it and data comes from the right place.
    assert cli(["hexdump", f"{disk}@2", "--lba", "1", "--block-size", "4096"]) == 0
    ours = capsys.readouterr().out
    with open_device(f"{disk}@2", block_size=4096) as dev:
        first = dev.read(1)[:16]
    assert ours.splitlines()[0].startswith("00001000  " + " ".join(f"{b:02x}" for b in first[:8]))


def test_hexdump_folds_repeats(tmp_path, capsys):
    img = tmp_path / "z.img"
    img.write_bytes(bytes(4096))
    assert cli(["hexdump", str(img), "--count", "8"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "00000000  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|", "*", "00001000"]


def test_error_paths_are_one_line_and_nonzero(disk, tmp_path, capsys):
    before = sha(disk)
    assert cli(["info", str(tmp_path / "missing.img")]) == 8
    one_line_error(capsys, "missing.img", "no such")
    assert cli(["hexdump", str(tmp_path)]) == 8
    one_line_error(capsys, str(tmp_path), "directory")
    odd = tmp_path / "odd.img"
    odd.write_bytes(bytes(3 * 512))
    assert cli(["hexdump", str(odd), "--block-size", "1024"]) == 8
    one_line_error(capsys, "odd.img", "not a multiple")
    assert cli(["hexdump", str(disk), "--lba", "32768"]) == 8
    one_line_error(capsys, "lba 32768", "past the end")
    blk = tmp_path / "blk"
    blk.write_bytes(b"\x01" * 512)
    assert cli(["write-blocks", str(disk), "--lba", "5", "--input", str(blk)]) == 8
    one_line_error(capsys, str(disk), "read-only")
    assert cli(["write-blocks", str(disk), "--lba", "32768", "--input", str(blk), "--writable"]) == 8
    one_line_error(capsys, "lba 32768", "past the end")
    half = tmp_path / "half"
    half.write_bytes(b"\x01" * 100)
    assert cli(["write-blocks", str(disk), "--lba", "5", "--input", str(half), "--writable"]) == 8
    one_line_error(capsys, "not a positive multiple")
    assert cli(["info", f"{disk}@4"]) == 16
    one_line_error(capsys, "no partition 4")
    assert cli(["info", f"{disk}@1", "--partition", "2"]) == 16
    one_line_error(capsys, "--partition 2")
    assert cli(["hexdump", str(disk), "--count", "0"]) == 16
    one_line_error(capsys, "--count")
    assert sha(disk) == before  # nothing was written by any of it


def test_corrupt_table_is_one_line_naming_device_and_lba(disk, capsys):
    with open(disk, "r+b") as f:  # partition 2 now starts inside partition 1
        f.seek(446 + 16 + 8)
        f.write((4096).to_bytes(4, "little"))
    assert cli(["info", str(disk)]) == 8
    one_line_error(capsys, str(disk), "lba 0", "overlap")


def test_info_of_a_gpt_notes_a_corrupt_backup(tmp_path, capsys):
    img = tmp_path / "g.img"
    with open(img, "wb") as f:
        f.truncate(8 * MiB)
    subprocess.run(["sgdisk", "-n", "1:2048:+2M", "-c", "1:data", "-n", "2:0:0", str(img)], check=True,
                   capture_output=True)
    with open(img, "r+b") as f:
        f.seek(8 * MiB - 512 + 40)
        f.write(b"\xff")
    assert cli(["info", str(img)]) == 0
    out = capsys.readouterr().out
    assert "GPT partition table" in out and "data" in out
    assert "note: backup GPT header at lba 16383 has a bad CRC32" in out


def test_write_blocks_when_asked_and_through_an_overlay(disk, tmp_path, capsys):
    blk = tmp_path / "blk"
    blk.write_bytes(b"\x5a" * 1024)
    before = sha(disk)
    side = tmp_path / "disk.cow"
    assert cli(["write-blocks", str(disk), "--lba", "10", "-i", str(blk), "--writable", "--overlay", str(side)]) == 0
    assert sha(disk) == before
    with open_device(str(disk), overlay=side) as dev:
        assert dev.read(10, 2) == b"\x5a" * 1024
    assert cli(["overlay", "discard", str(disk), str(side)]) == 0
    assert "discarded 2 block(s)" in capsys.readouterr().out
    assert cli(["write-blocks", str(disk), "--lba", "10", "-i", str(blk), "-w", "--overlay", str(side)]) == 0
    assert cli(["overlay", "commit", str(disk), str(side)]) == 0
    assert disk.read_bytes()[10 * 512 : 12 * 512] == b"\x5a" * 1024
    assert cli(["write-blocks", f"{disk}@5", "--lba", "0", "-i", str(blk), "-w"]) == 0
    parts = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True, capture_output=True,
                                      text=True).stdout)["partitiontable"]["partitions"]
    start = next(p["start"] for p in parts if p["node"].endswith("img5")) * 512
    assert disk.read_bytes()[start : start + 1024] == b"\x5a" * 1024


def test_trace_print_and_summary(disk, tmp_path, capsys):
    tfile = tmp_path / "io.trace"
    with open_device(str(disk), trace=tfile) as dev:
        for lba in range(0, 64, 8):
            dev.read(lba, 8)
    assert cli(["trace", str(tfile)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 8 + 0  # header, column names, 8 reads (read-only: close does not flush)
    assert lines[2].split()[1:4] == ["read", "0", "8"]
    assert cli(["trace", str(tfile), "--summary"]) == 0
    out = capsys.readouterr().out
    row = next(r for r in out.splitlines() if "│ read" in r)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[:6] == ["read", "8", "64", "32.0 KiB", "0", "88%"]
    assert cli(["trace", str(disk)]) == 4  # not a trace: a format error, one line
    one_line_error(capsys, str(disk), "not an fsproto trace")
    assert cli(["trace", str(tmp_path / "nope")]) == 8
    one_line_error(capsys, "no such trace file")


def test_every_device_command_has_help(capsys):
    for args in (["info"], ["hexdump"], ["trace"], ["write-blocks"], ["overlay"], ["overlay", "commit"],
                 ["overlay", "discard"]):
        assert cli([*args, "--help"]) == 0, args
    assert "IMAGE@N" in capsys.readouterr().out


@pytest.mark.loop
def test_info_on_a_loop_device(disk, capsys):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    node = subprocess.run(["losetup", "-f", "--show", str(disk)], check=True, capture_output=True,
                          text=True).stdout.strip()
    try:
        assert cli(["info", node]) == 0
        out = capsys.readouterr().out
        assert "block device" in out and "opened exclusively" in out and "MBR partition table" in out
        fd = os.open(node, os.O_RDONLY | os.O_EXCL)
        try:
            assert cli(["info", node]) == 8
            one_line_error(capsys, node, "exclusively")
        finally:
            os.close(fd)
    finally:
        subprocess.run(["losetup", "-d", node], check=False)
