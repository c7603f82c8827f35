"""What the README's setup installs is really there.

Many tests skip on a machine without QEMU, gdb or the partition tools; under CI (``CI`` set, as
``.ci/run`` runs) a missing tool must fail loudly instead of turning whole layers into skips.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRED_TOOLS = [
    "fusermount3", "losetup", "sfdisk", "sgdisk", "mkfs.ext2", "mkfs.vfat", "fsck.vfat", "mcopy",
    "getfattr", "qemu-system-x86_64", "qemu-system-s390x", "busybox", "gdb", "xz",
    "nbdkit", "nbdcopy", "nbdinfo", "qemu-nbd", "qemu-img", "ewfacquire",
]


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI must have every tool; locally tests skip what is missing")
@pytest.mark.parametrize("tool", REQUIRED_TOOLS)
def test_ci_has_every_tool_the_setup_installs(tool: str) -> None:
    assert shutil.which(tool), f"{tool} is missing: tools/setup.sh (or tools/cmsref prepare) did not install it"


def test_pyfuse3_and_construct_import() -> None:
    import construct
    import pyfuse3
    import trio

    assert pyfuse3.__version__ and construct.__version__ and trio.__version__


def test_second_wave_python_dependencies_import() -> None:
    """libnbd's binding (linked into the venv by setup.sh), libewf's, atheris, textual and pillow."""
    import atheris
    import nbd
    import PIL
    import pyewf
    import textual

    assert nbd.NBD and atheris.Fuzz and PIL.__version__ and textual.__version__ and pyewf.get_version()


def test_nbdkit_has_its_python_plugin() -> None:
    import subprocess

    if not shutil.which("nbdkit"):
        pytest.skip("nbdkit is not installed")
    out = subprocess.run(["nbdkit", "python", "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
