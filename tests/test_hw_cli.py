"""CLI: repl scripts, pci ls/config, peek/poke -- in-process, exit statuses, one-line errors."""

from __future__ import annotations

import os

import pytest

from fsproto.cli import cli

SYSFS = "/sys/bus/pci/devices"
has_pci = pytest.mark.skipif(not os.path.isdir(SYSFS) or not os.listdir(SYSFS), reason="no PCI bus")


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "regs.bin"
    path.write_bytes(bytes(range(64)))
    return path


@pytest.mark.parametrize("args", [["repl"], ["pci"], ["pci", "ls"], ["pci", "config"], ["peek"], ["poke"]])
def test_help(args, capsys):
    assert cli([*args, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


@pytest.mark.parametrize("width, offset, expect", [("8", "0x5", "0x05"), ("16", "6", "0x0706"),
                                                   ("32", "0x8", "0x0b0a0908"), ("64", "0x10", "0x1716151413121110")])
def test_peek_each_width(image, capsys, width, offset, expect):
    assert cli(["peek", str(image), offset, "--width", width]) == 0
    assert capsys.readouterr().out.strip() == expect


def test_poke_writes_one_value_and_dry_run_does_not(image, capsys):
    assert cli(["poke", str(image), "0x20", "0xdeadbeef"]) == 0
    assert image.read_bytes()[0x20:0x24] == bytes.fromhex("efbeadde")
    before = image.read_bytes()
    assert cli(["poke", str(image), "0", "0xff", "--width", "8", "--dry-run"]) == 0
    assert "dry-run" in capsys.readouterr().out
    assert image.read_bytes() == before


@pytest.mark.parametrize(
    "args, status, words",
    [
        (["peek", "{img}", "2"], 8, "aligned"),
        (["peek", "{img}", "64"], 8, "past the end"),
        (["peek", "{img}.missing", "0"], 8, "no such file"),
        (["poke", "{img}", "0", "0x1ff", "--width", "8"], 16, "does not fit"),
        (["peek", "/dev/mem", "0"], 8, "/dev/mem"),
        (["pci", "config", "00:1e.7"], 8, "no PCI device"),
        (["pci", "config", "bogus"], 16, "not a PCI address"),
    ],
)
def test_errors_are_one_line_and_non_zero(image, capsys, args, status, words):
    if "/dev/mem" in args and os.path.exists("/dev/mem"):
        pytest.skip("this kernel has /dev/mem")
    before = image.read_bytes()
    assert cli([a.format(img=image) for a in args]) == status
    err = capsys.readouterr().err.strip()
    assert words in err and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("fsproto: error:")
    assert image.read_bytes() == before


@pytest.mark.parametrize("args, words", [(["peek", "{img}", "zero"], "not an integer"),
                                         (["peek", "--", "{img}", "-8"], "negative"),
                                         (["poke", "{img}", "0", "lots"], "not an integer")])
def test_bad_numbers_are_usage_errors(image, capsys, args, words):
    assert cli([a.format(img=image) for a in args]) == 16
    assert words in capsys.readouterr().err


@has_pci
def test_pci_ls_lists_every_function(capsys):
    assert cli(["pci", "ls"]) == 0
    out = capsys.readouterr().out
    for bdf in os.listdir(SYSFS):
        with open(f"{SYSFS}/{bdf}/vendor") as f:
            vendor = f.read().strip()[2:]
        assert bdf in out and vendor in out


@has_pci
def test_pci_config_dump_matches_sysfs_bytes(capsys):
    bdf = sorted(os.listdir(SYSFS))[-1]
    assert cli(["pci", "config", bdf]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    with open(f"{SYSFS}/{bdf}/config", "rb") as f:
        raw = f.read(16)
    assert first.startswith("00000000: " + " ".join(raw[i : i + 2].hex() for i in range(0, 16, 2)))
    assert cli(["pci", "config", bdf, "--decode"]) == 0
    out = capsys.readouterr().out
    assert "VENDOR_ID" in out and "COMMAND" in out and "STATUS" in out


def test_repl_script_uses_the_vocabulary(tmp_path, image, capsys):
    script = tmp_path / "bringup.py"
    script.write_text(
        "import sys\n"
        f"bar = mmap({str(image)!r}, writable=True)\n"
        "w32(bar, 0x30, 0x12345678)\n"
        "print(hex(r32(bar, 0x30)), hex(r8(bar, 0x31)), sys.argv[1])\n"
        "buf = malloc(4096); buf.write(0, b'x'); print(vir2phys(buf.addr) > 0 if __import__('os').geteuid() == 0 else True)\n"
        "free(buf)\n"
        "print(regs(mmap(None, 0x2000, writable=True), 'nvme').CC.EN)\n"
    )
    assert cli(["repl", str(script), "arg1"]) == 0
    assert capsys.readouterr().out.split() == ["0x12345678", "0x56", "arg1", "True", "0"]
    assert image.read_bytes()[0x30:0x34] == bytes.fromhex("78563412")


def test_repl_script_errors(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("r32(mmap(None, 64), 3)\n")
    assert cli(["repl", str(bad)]) == 8
    assert "aligned" in capsys.readouterr().err
    bug = tmp_path / "bug.py"
    bug.write_text("1 / 0\n")
    assert cli(["repl", str(bug)]) == 8
    assert "ZeroDivisionError" in capsys.readouterr().err
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def (\n")
    assert cli(["repl", str(syntax)]) == 16
    assert cli(["repl", str(tmp_path / "missing.py")]) == 16


def test_interactive_repl_reads_stdin_and_keeps_going_after_an_error(monkeypatch, capsys, tmp_path):
    import io

    from fsproto.hw import repl

    monkeypatch.setattr(repl, "HISTORY", str(tmp_path / "history"))
    monkeypatch.setattr("sys.stdin", io.StringIO("r = mmap(None, 64, writable=True)\nr32(r, 2)\nw16(r, 0, 7); print(r16(r, 0))\n"))
    assert cli(["repl"]) == 0
    captured = capsys.readouterr()
    assert "error: AlignmentError" in captured.err and "7" in captured.out


def test_tab_completion_lists_registers_without_reading_them():
    from fsproto.hw.backends import FakeBackend
    from fsproto.hw.region import Region
    from fsproto.hw.regmaps import NVME
    from fsproto.hw.repl import completer, namespace

    fake = FakeBackend(0x2000)
    ns = namespace()
    ns["nvme"] = NVME.bind(Region(fake))
    comp = completer(ns)
    matches = []
    state = 0
    while (m := comp.complete("nvme.C", state)) is not None:
        matches.append(m)
        state += 1
    assert {"nvme.CAP", "nvme.CC", "nvme.CSTS"} <= set(matches)
    assert fake.accesses == []  # completing never touched the device
    assert comp.complete("vir2", 0) == "vir2phys("


def test_hw_check_reports_this_machine(capsys):
    import resource

    assert cli(["hw-check"]) == 0
    lines = {line[3:].split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["/dev/mem"].startswith("ok " if os.path.exists("/dev/mem") else "-- ")
    assert lines["physical addresses"].startswith("ok " if os.geteuid() == 0 else "-- ")
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    assert ("unlimited" if soft == resource.RLIM_INFINITY else f"{soft // 1024} KiB") in lines["memlock limit"]
    assert len(lines) == 11
