"""``fsproto serve`` through real nbdkit, read back by independent NBD clients (qemu-img, nbdcopy,
libnbd) and by fsproto's own ``nbd+unix://`` devices; the images checked by fsck.vfat, mtools and
fsproto fsck. Every test checks that no nbdkit outlived it."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import nbd
import pytest

from fsproto.errors import MediaError
from fsproto.rawdev import open_device
from nbd_helpers import Served, fsproto, wait_no_helpers

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def fat_image(tmp_path: Path) -> Path:
    img = tmp_path / "fat.img"
    fsproto("mkfs", "--format", "fat", "--size", "16M", str(img), check=True)
    return img


@pytest.fixture
def cms_image(tmp_path: Path) -> Path:
    img = tmp_path / "cms.img"
    fsproto("mkfs", "--format", "cms", "--block-size", "4096", "--label", "NBD01", "--size", "8M", str(img), check=True)
    src = tmp_path / "PROFILE.EXEC"
    src.write_text("/* served over NBD */\nSAY 'HELLO'\n")
    fsproto("put", "--text", "--recfm", "F", "--lrecl", "80", str(img), str(src), check=True)
    return img


@pytest.fixture(autouse=True)
def no_helper_left(tmp_path: Path):
    yield
    assert wait_no_helpers(str(tmp_path)) == []


def test_served_cms_image_converts_to_the_same_bytes(cms_image: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.raw"
    with Served("--read-only", str(cms_image)) as srv:
        assert "read-only" in srv.banner
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", srv.uri, str(out)], check=True,
                       timeout=60)
        copied = subprocess.run(["nbdcopy", srv.uri, "-"], capture_output=True, check=True, timeout=60).stdout
        assert srv.stop() == 0
    assert out.read_bytes() == cms_image.read_bytes()
    assert copied == cms_image.read_bytes()
    assert "flushed and closed" in srv.stdout


def test_ls_put_cat_through_nbd_unix_then_mtools_and_fsck_vfat_agree(fat_image: Path, tmp_path: Path) -> None:
    host = tmp_path / "hello.txt"
    host.write_bytes(b"written through nbd+unix\n" * 300)
    with Served(str(fat_image)) as srv:
        assert srv.uri.startswith("nbd+unix:///?socket=")
        fsproto("put", srv.uri, str(host), check=True)
        assert fsproto("ls", srv.uri, check=True).stdout.split() == ["hello.txt"]
        assert fsproto("cat", srv.uri, "hello.txt", check=True).stdout.encode() == host.read_bytes()
        info = fsproto("info", srv.uri, check=True).stdout
        assert "NBD export" in info and "16777216 bytes" in info
        assert fsproto("fsck", srv.uri).returncode == 0
        assert fsproto("hexdump", srv.uri, check=True).stdout.startswith("00000000  eb ")  # the boot jump
        assert fsproto("dump", srv.uri, check=True).stdout.startswith(f"FAT16 on {srv.uri}")
        fsproto("get", "-o", str(tmp_path / "back"), srv.uri, "hello.txt", check=True)
        assert (tmp_path / "back" / "hello.txt").read_bytes() == host.read_bytes()
        assert srv.stop(signal.SIGINT) == 0
    assert "stopped (SIGINT)" in srv.stdout
    fsck = subprocess.run(["fsck.vfat", "-n", str(fat_image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout
    mtype = subprocess.run(["mtype", "-i", str(fat_image), "::HELLO.TXT"], capture_output=True, check=True)
    assert mtype.stdout == host.read_bytes()


def test_byte_ranges_fua_zero_trim_and_flush_reach_the_image(tmp_path: Path) -> None:
    img = tmp_path / "raw.img"
    model = bytearray(os.urandom(4 << 20))
    img.write_bytes(model)
    trace = tmp_path / "trace"
    with Served("--trace", str(trace), str(img)) as srv:
        h = nbd.NBD()
        h.connect_uri(srv.uri)
        assert h.can_fua() and h.can_zero() and h.can_trim() and h.can_flush() and h.can_multi_conn()
        for offset, data in ((1000, b"x" * 3000), (4096, b"y" * 8192), (511, b"z"), (4 * 1024 * 1024 - 7, b"end!!!!")):
            h.pwrite(data, offset)
            model[offset : offset + len(data)] = data
        h.pwrite(b"F" * 512, 65536, nbd.CMD_FLAG_FUA)
        model[65536 : 65536 + 512] = b"F" * 512
        h.zero(10000, 200000)
        model[200000:210000] = bytes(10000)
        h.zero(1 << 20, 1 << 20, nbd.CMD_FLAG_NO_HOLE)
        model[1 << 20 : 2 << 20] = bytes(1 << 20)
        h.trim(4096, 3 << 20)  # advisory: the bytes after it are unspecified, so not compared
        got_trimmed = h.pread(4096, 3 << 20)
        model[3 << 20 : (3 << 20) + 4096] = got_trimmed
        h.flush()
        assert h.pread(len(model), 0) == bytes(model)
        h.shutdown()
        assert srv.stop() == 0
    assert img.read_bytes() == bytes(model)
    summary = fsproto("trace", "--summary", str(trace), check=True).stdout
    assert "flush" in summary  # FUA, flush and the flush at shutdown went through the device


def test_four_clients_reading_at_once_get_identical_bytes(tmp_path: Path) -> None:
    img = tmp_path / "random.img"
    img.write_bytes(os.urandom(8 << 20))
    want = hashlib.sha256(img.read_bytes()).hexdigest()
    with Served("--read-only", str(img)) as srv:
        procs = [subprocess.Popen(["nbdcopy", srv.uri, "-"], stdout=subprocess.PIPE) for _ in range(4)]
        digests = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0
            digests.append(hashlib.sha256(out).hexdigest())
        # and four fsproto NBD devices in threads, interleaving their requests
        results: list[str] = []

        def read_all() -> None:
            with open_device(srv.uri) as dev:
                h = hashlib.sha256()
                for lba in range(0, dev.num_blocks, 128):
                    h.update(dev.read(lba, min(128, dev.num_blocks - lba)))
                results.append(h.hexdigest())

        threads = [threading.Thread(target=read_all) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert srv.stop() == 0
    assert digests == [want] * 4
    assert results == [want] * 4


def test_served_device_is_locked_like_a_mount(fat_image: Path, tmp_path: Path) -> None:
    host = tmp_path / "x.txt"
    host.write_text("x")
    with Served(str(fat_image)) as srv:
        put = fsproto("put", str(fat_image), str(host))
        assert put.returncode == 8 and put.stderr.count("\n") == 1 and "in use" in put.stderr
        second = fsproto("serve", str(fat_image))
        assert second.returncode == 8 and second.stderr.count("\n") == 1 and "in use" in second.stderr
        assert srv.stop() == 0
    fsproto("put", str(fat_image), str(host), check=True)  # free again once the server stopped


def test_taken_port_is_one_line_and_leaves_no_nbdkit(fat_image: Path) -> None:
    private_dirs = set(Path(tempfile.gettempdir()).glob("fsproto-serve-*"))
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = fsproto("serve", "--port", str(port), str(fat_image), timeout=60)
    assert done.returncode == 8
    assert done.stderr.startswith("fsproto: error: ") and done.stderr.count("\n") == 1
    assert "Address already in use" in done.stderr
    assert set(Path(tempfile.gettempdir()).glob("fsproto-serve-*")) <= private_dirs  # nothing left behind


def test_tcp_port_serves_on_localhost(fat_image: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Served("--port", str(port), "--read-only", str(fat_image)) as srv:
        assert srv.uri == f"nbd://127.0.0.1:{port}/"
        assert fsproto("ls", srv.uri, check=True).returncode == 0
        assert srv.stop() == 0


@pytest.mark.parametrize("case", ["missing export", "refused", "no socket"])
def test_bad_nbd_uris_are_one_line_errors(fat_image: Path, tmp_path: Path, case: str) -> None:
    if case == "missing export":
        with Served("--export", "disk", str(fat_image)) as srv:
            done = fsproto("ls", srv.uri.replace("/disk?", "/nope?"))
            assert fsproto("ls", srv.uri, check=True).returncode == 0  # the right name still opens
            assert srv.stop() == 0
        assert "no export named 'nope'" in done.stderr
    elif case == "refused":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed again: nobody listens there
        done = fsproto("ls", f"nbd://127.0.0.1:{port}/")
        assert "Connection refused" in done.stderr
    else:
        done = fsproto("ls", f"nbd+unix:///?socket={tmp_path}/none.sock")
        assert "No such file or directory" in done.stderr
    assert done.returncode == 8
    assert done.stderr.startswith("fsproto: error: nbd") and done.stderr.count("\n") == 1


def test_a_killed_server_is_one_clear_error_for_client_and_serve(fat_image: Path) -> None:
    srv = Served(str(fat_image))
    try:
        dev = open_device(srv.uri)
        dev.read(0, 1)
        os.kill(srv.nbdkit_pid(), signal.SIGKILL)
        with pytest.raises(MediaError, match="NBD read failed"):
            dev.read(1, 1)
        dev.close()  # the dead connection does not make close hang or raise
        status = srv.stop(timeout=30)
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
    assert status == 8
    assert srv.stderr.startswith("fsproto: error:") and srv.stderr.count("\n") == 1
    assert "nbdkit exited (signal SIGKILL)" in srv.stderr


def test_fault_cut_mid_workload_leaves_a_cms_disk_fsck_accepts(cms_image: Path, tmp_path: Path) -> None:
    files = []
    for i in range(6):
        f = tmp_path / f"FILE{i}.DATA"
        f.write_bytes(bytes((i * 7 + j) & 0xFF for j in range(20000)))
        files.append(f)
    with Served("--fault", "cut-after-writes=9,after-cut=error", str(cms_image)) as srv:
        outcomes = [fsproto("put", srv.uri, str(f)) for f in files]
        assert srv.stop() == 0
    failed = [o for o in outcomes if o.returncode != 0]
    assert failed, "the cut never happened: the workload is too small for cut-after-writes=9"
    assert all(o.stderr.count("\n") == 1 and "fsproto: error:" in o.stderr for o in failed)
    fsck = fsproto("fsck", str(cms_image))
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    listed = fsproto("ls", str(cms_image), check=True).stdout.split()
    landed = [f.name for f, o in zip(files, outcomes) if o.returncode == 0]
    assert set(landed) <= set(listed)


def test_overlay_keeps_client_writes_off_the_image(fat_image: Path, tmp_path: Path) -> None:
    before = fat_image.read_bytes()
    host = tmp_path / "new.txt"
    host.write_text("only in the overlay")
    sidecar = tmp_path / "ovl"
    with Served("--overlay", str(sidecar), str(fat_image)) as srv:
        fsproto("put", srv.uri, str(host), check=True)
        assert "new.txt" in fsproto("ls", srv.uri, check=True).stdout
        assert srv.stop() == 0
    assert fat_image.read_bytes() == before
    fsproto("overlay", "commit", str(fat_image), str(sidecar), check=True)
    assert "new.txt" in fsproto("ls", str(fat_image), check=True).stdout


def test_bad_fault_spec_is_a_usage_error(fat_image: Path) -> None:
    done = fsproto("serve", "--fault", "cut-after=3", str(fat_image))
    assert done.returncode == 16 and "unknown key 'cut-after'" in done.stderr and done.stderr.count("\n") == 1


def test_a_partition_is_served_as_its_own_disk(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(8 << 20))
    subprocess.run(["sfdisk", "-q", str(img)], input="2048,4096,83\n6144,,83\n", text=True, check=True)
    out = tmp_path / "part2.raw"
    with Served("--read-only", f"{img}@2") as srv:
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", srv.uri, str(out)], check=True, timeout=60)
        assert srv.stop() == 0
    assert out.read_bytes() == img.read_bytes()[6144 * 512 :]


def test_a_user_space_nvme_namespace_with_4k_blocks_takes_unaligned_writes(tmp_path: Path) -> None:
    """fsproto's own NVMe driver (QEMU's model over qtest) runs inside nbdkit; NBD byte ranges
    that split its 4096-byte blocks are read-modify-written."""
    img = tmp_path / "nvme.img"
    model = bytearray(os.urandom(4 << 20))
    img.write_bytes(model)
    spec = f"nvme:qtest:{img},logical_block_size=4096,physical_block_size=4096"
    with Served(spec) as srv:
        h = nbd.NBD()
        h.connect_uri(srv.uri)
        assert h.get_block_size(nbd.SIZE_PREFERRED) == 4096
        for offset, data in ((4095, b"across"), (10, b"a" * 9000), (3 << 20, b"b" * 4096)):
            h.pwrite(data, offset, nbd.CMD_FLAG_FUA)
            model[offset : offset + len(data)] = data
        assert h.pread(len(model), 0) == bytes(model)
        h.shutdown()
        assert srv.stop() == 0
    assert img.read_bytes() == bytes(model)


def test_an_idle_client_does_not_hold_up_the_stop(fat_image: Path) -> None:
    with Served(str(fat_image)) as srv:
        h = nbd.NBD()
        h.connect_uri(srv.uri)
        h.pwrite(b"\xaa" * 512, 8 << 20)  # a write that must be flushed at the stop
        assert srv.stop(timeout=30) == 0  # nbdkit 1.32 alone would wait for this client forever
        with pytest.raises(nbd.Error):
            h.pread(512, 0)
        del h
    assert "flushed and closed" in srv.stdout
    with open(fat_image, "rb") as f:
        f.seek(8 << 20)
        assert f.read(512) == b"\xaa" * 512


def test_when_fsproto_serve_dies_nbdkit_closes_the_device_and_goes(fat_image: Path, tmp_path: Path) -> None:
    srv = Served(str(fat_image))
    h = nbd.NBD()
    h.connect_uri(srv.uri)  # an idle client must not keep the orphaned nbdkit alive
    private_dir = os.path.dirname(srv.uri.split("socket=", 1)[1])
    srv.proc.kill()
    srv.proc.wait()
    assert wait_no_helpers(str(tmp_path)) == []
    assert not os.path.exists(private_dir)  # the orphaned plugin removed socket, pidfile and status
    del h
    host = tmp_path / "after.txt"
    host.write_text("the lock went with nbdkit")
    fsproto("put", str(fat_image), str(host), check=True)


def test_log_keeps_nbdkit_messages_and_mkfs_size_refuses_a_uri(fat_image: Path, tmp_path: Path) -> None:
    log = tmp_path / "nbdkit.log"
    with Served("--log", str(log), "--verbose", str(fat_image)) as srv:
        fsproto("ls", srv.uri, check=True)
        made = fsproto("mkfs", "--format", "fat", "--size", "8M", srv.uri)
        assert srv.stop() == 0
    assert made.returncode == 16 and "--size creates image files only" in made.stderr
    text = log.read_text()
    assert "python: pread count=" in text  # --verbose: nbdkit logged each request
