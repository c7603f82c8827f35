"""fsproto crashcheck: it finds a planted ordering bug and saves the smallest failing state;
CMS and the tutorial format (as an installed plugin, through the real console script) pass.

Real parts: the formats' own mkfs/fsck/open on MemoryDevices rebuilt from the recorded write
stream; the plugin test installs the tutorial the way pip would and runs ``fsproto`` in a
subprocess. State counts are bounded (--max-states) to keep the suite cost small.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from crash_planted import FORMAT as PLANTED
from fsproto.cli import cli
from fsproto.crash.builtins import builtin, data
from fsproto.crash.check import check_state, expectations
from fsproto.crash.runner import explore, save_failures
from fsproto.crash.states import CrashState, enumerate_states
from fsproto.formats import get
from test_tutorial import install_plugin

WORKLOAD = '''
def data(n, seed):
    return bytes((seed * 31 + i * 7) & 0xFF for i in range(n))

def setup(fs):
    fs.create("/KEEP.DAT")
    fs.write("/KEEP.DAT", 0, data(1500, 1))

def run(w):
    w.create("/A.DAT")
    w.write("/A.DAT", 0, data(2000, 2))
    w.fsync()
    w.append("/A.DAT", data(700, 3))
    w.write("/KEEP.DAT", 0, data(600, 4))
    w.fsync()
    w.create("/B.DAT")
    w.write("/B.DAT", 0, data(900, 5))
    w.unlink("/A.DAT")
    w.fsync()
'''


def _script(tmp_path: Path) -> str:
    p = tmp_path / "wl.py"
    p.write_text(WORKLOAD)
    return str(p)


def test_planted_directory_before_data_is_found_and_the_minimal_state_saved(tmp_path: Path) -> None:
    from fsproto.crash.workload import load_workload_file

    script = load_workload_file(_script(tmp_path))
    run = explore(PLANTED, script, order="prefix")
    assert not run.passed
    first_state, first = run.failures[0]
    assert first.verdict == "lost" and "/A.DAT" in first.detail
    assert first_state.size == min(s.size for s, _ in run.failures)
    saved = save_failures(run, str(tmp_path / "out"))
    assert saved[0].endswith("state-001.img")
    listing = Path(saved[0][:-4] + ".writes").read_text()
    assert "lost" in listing and listing.count("\nwrite ") == first_state.size
    # The saved image alone reproduces the verdict.
    r = run.recording
    expect = expectations(r.workload.acceptable, sorted(r.workload.history), first_state, r.flush_points)
    assert check_state(PLANTED, Path(saved[0]).read_bytes(), 512, expect).verdict == "lost"
    # The correct order (the tutorial itself) passes the same workload.
    from fsproto.formats.tutorial import FORMAT as TINY

    assert explore(TINY, script, order="prefix").passed


def test_epoch_states_keep_every_write_before_the_last_flush() -> None:
    run = explore(get("cms"), builtin("basic"), order="epoch", max_states=300)
    writes, flushes = run.recording.writes, run.recording.flush_points
    states, total = enumerate_states(writes, flushes, "epoch", 300)
    assert 0 < len(states) <= 300 and total >= len(states)
    for s in states:
        epoch = max([0] + [f for f in flushes if f <= s.durable])
        assert set(range(epoch)) <= set(s.writes)
        assert all(writes[i].epoch == writes[s.writes[-1]].epoch for i in s.writes if i >= epoch)
    # Sampling is seeded: the same seed gives the same states.
    assert enumerate_states(writes, flushes, "all", 50, seed=7) == enumerate_states(writes, flushes, "all", 50, seed=7)


def test_cms_passes_in_order_crash_states_through_the_cli(tmp_path: Path, capsys) -> None:
    rc = cli(["crashcheck", "--format", "cms", "--builtin", "basic", "--orders", "prefix", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "pass" in out and (tmp_path / "workload.trace").stat().st_size > 0


def test_cms_enospc_passes(tmp_path: Path, capsys) -> None:
    run = explore(get("cms"), builtin("enospc"), order="prefix", max_states=400)
    assert run.passed, run.failures[:1]


@pytest.mark.parametrize("workload", ["basic", "enospc"])
def test_fat_passes_in_order_crash_states(workload: str) -> None:
    # basic renames over an existing file: FAT writes the three entry changes in one sector
    # write (Directory.one_write), so no cut leaves two names on one chain.
    run = explore(get("fat"), builtin(workload), order="prefix", max_states=400)
    assert run.passed, [(s.describe(run.recording.writes)[-1:], v.detail) for s, v in run.failures[:2]]
    assert run.counts()["repaired"] > 0  # cuts do land between the FAT and the directory


def test_fat_rename_over_a_file_is_one_sector_write() -> None:
    from fsproto.blockdev.memory import MemoryDevice
    from fsproto.crash.record import RecordingDevice

    dev = MemoryDevice(num_blocks=2048)
    fat = get("fat")
    fat.mkfs(dev)
    fs = fat.open(dev)
    for n in ("/A.DAT", "/B.DAT"):
        fs.create(n)
        fs.write(n, 0, data(1000, len(n)))
    fs.close()
    rec = RecordingDevice(dev)
    fs = fat.open(rec)
    fs.rename("/A.DAT", "/B.DAT")
    dir_writes = [w for w in rec.writes if w.blocks == 1 and w.data.find(b"B       DAT") >= 0]
    assert len(dir_writes) == 1
    fs.close()


def test_bad_arguments_are_one_line_usage_errors(tmp_path: Path, capsys) -> None:
    assert cli(["crashcheck", "--format", "cms", "--out", str(tmp_path)]) == 16
    assert cli(["crashcheck", "--format", "cms", "--builtin", "nope", "--out", str(tmp_path)]) == 16
    (tmp_path / "bad.py").write_text("x = 1\n")
    assert cli(["crashcheck", "--format", "cms", "--workload", str(tmp_path / "bad.py"), "--out", str(tmp_path)]) == 16
    assert "defines no run(w)" in capsys.readouterr().err


def test_a_plugin_format_works_with_no_extra_code(tmp_path: Path) -> None:
    env = install_plugin(tmp_path)
    wl = _script(tmp_path)
    r = subprocess.run(["fsproto", "crashcheck", "--format", "tiny", "--workload", wl, "--orders", "prefix",
                        "--max-states", "200", "--jobs", "2", "--out", str(tmp_path / "o")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tiny / wl.py / prefix" in r.stdout
    # TinyFS's rename over an existing file removes the target first (its docstring says so):
    # the basic built-in catches that window, and the failing state is saved.
    r = subprocess.run(["fsproto", "crashcheck", "--format", "tiny", "--builtin", "basic", "--out", str(tmp_path / "b")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "/OLD1.DAT: holds absent" in r.stdout and (tmp_path / "b" / "state-001.img").exists()


def test_cms_repair_is_crash_safe_itself() -> None:
    """fsck --repair cut after each of its own writes, on states that need repair (epoch
    reorderings of the basic workload), leaves a volume a second repair makes clean."""
    from fsproto.blockdev.memory import MemoryDevice
    from fsproto.crash.record import RecordingDevice
    from fsproto.crash.states import apply

    cms = get("cms")
    run = explore(cms, builtin("basic"), order="epoch", max_states=300)
    rec = run.recording
    needing = [s for s, v in run.results if v.verdict == "repaired"][:20]
    assert needing
    cuts = 0
    for state in needing:
        image = bytes(apply(rec.base, 512, rec.writes, state))
        recorder = RecordingDevice(MemoryDevice.from_bytes(image, 512))
        assert cms.fsck(recorder, repair=True).clean
        for k in range(len(recorder.writes)):
            cut = apply(image, 512, recorder.writes, CrashState("prefix", k))
            dev = MemoryDevice.from_bytes(bytes(cut), 512)
            assert cms.fsck(dev, repair=True).clean
            assert cms.fsck(dev).clean, (state.writes, k)
            cuts += 1
    assert cuts > 0


@pytest.mark.parametrize("fmt", ["cms", "fat"])
def test_many_files_builtin_passes_sampled_states(fmt: str) -> None:
    # The full built-in makes 10,000 files; 600 keep the suite fast (FAT: in /MANY, past the
    # fixed FAT16 root's 512 entries).
    run = explore(get(fmt), builtin("many", many=600), order="prefix", max_states=25, seed=3)
    assert run.passed and len(run.results) == 25 and run.considered > 600
