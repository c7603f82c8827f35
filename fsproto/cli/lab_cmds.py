"""CLI commands: ``fsproto lab ...`` -- a throwaway QEMU guest for driver work (fsproto.lab)."""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any, Callable

import click

from fsproto.errors import UsageError

_GUEST_PYTEST_FLAGS = "-q -p no:cacheprovider -p no:hypothesispytest -p no:benchmark"


def _guest_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--nvme", "nvme", multiple=True, type=click.Path(dir_okay=False, exists=True),
                     help="Image file for an emulated NVMe controller (00:04.0, 00:05.0, ... in the guest).")(f)
    f = click.option("--ahci", "ahci", multiple=True, type=click.Path(dir_okay=False, exists=True),
                     help="Image file for a SATA disk on the ICH9 AHCI (00:1f.2), ports 0, 1, ...")(f)
    f = click.option("--iommu", is_flag=True, help="Add an Intel vIOMMU (intel_iommu=on iommu=pt): needed for vfio-pci.")(f)
    f = click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds before the guest is killed.")(f)
    f = click.option("--memory", "memory_mb", type=int, default=1024, show_default=True, help="Guest RAM in MiB.")(f)
    f = click.option("--accel", type=click.Choice(["auto", "tcg", "kvm"]), default="auto", show_default=True,
                     help="auto: KVM only where kvm_intel/kvm_amd is loaded, else TCG.")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="Do not echo the guest's output while it runs.")(f)
    return f


def _run(command: str, nvme: tuple[str, ...], ahci: tuple[str, ...], iommu: bool, timeout: float, memory_mb: int,
         accel: str, quiet: bool) -> int:
    from fsproto.lab import Disk, run

    from fsproto.errors import GuestError

    disks = [Disk(p, "nvme") for p in nvme] + [Disk(p, "ahci") for p in ahci]
    try:
        result = run(command, disks=disks, timeout=timeout, iommu=iommu, accel=accel, memory_mb=memory_mb,
                     on_line=None if quiet else (lambda line: click.echo(line, nl=False)))
    except GuestError as e:
        if e.console_tail:  # the one error line follows; the console says why
            click.echo(f"lab: last console lines:\n{e.console_tail}", err=True)
        raise
    where = ", ".join(f"{os.path.basename(p)}={bdf}" for p, bdf in result.pci.items())
    click.echo(f"lab: guest command exited with status {result.status} after {result.seconds:.1f} s "
               f"({result.accel}{'; ' + where if where else ''})", err=True)
    return result.status


@click.group("lab")
def lab_group() -> None:
    """A disposable QEMU guest sharing this machine's root read-only (same Python, same fsproto).

    Emulated NVMe and AHCI disks are backed by image files; the guest runs one command and powers
    off; crashing it costs nothing. The exit status is the guest command's.
    """


@lab_group.command("prepare")
def prepare_cmd() -> int:
    """Fetch the guest kernel into the cache once (apt-get download; nothing is installed)."""
    from rich.console import Console

    from fsproto.lab import prepare

    with Console(stderr=True).status("preparing the lab kernel (download and unpack, once)"):
        k = prepare(log=lambda msg: click.echo(msg, err=True))
    click.echo(f"lab kernel {k.release}: {k.vmlinux}")
    return 0


@lab_group.command("run", context_settings={"ignore_unknown_options": True})
@_guest_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_cmd(command: tuple[str, ...], **opts: Any) -> int:
    """Run COMMAND (a shell command line) in the guest, e.g. `fsproto lab run --nvme d.img -- lspci`."""
    line = command[0] if len(command) == 1 else shlex.join(command)
    return _run(line, **opts)


@lab_group.command("script")
@_guest_options
@click.argument("script", type=click.Path(dir_okay=False, exists=True))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def script_cmd(script: str, args: tuple[str, ...], **opts: Any) -> int:
    """Run SCRIPT (a shell script on this machine) with ARGS in the guest."""
    # The text travels in the initramfs: the script may live where the guest cannot see (/tmp).
    with open(script, encoding="utf-8", errors="replace") as f:
        text = f.read()
    return _run(f"set -- {shlex.join(args)}\n{text}", **opts)


@lab_group.command("pytest", context_settings={"ignore_unknown_options": True})
@_guest_options
@click.argument("selection", nargs=-1, type=click.UNPROCESSED)
def pytest_cmd(selection: tuple[str, ...], **opts: Any) -> int:
    """Run `python -m pytest SELECTION` in the guest (heavy plugins off; the root is read-only)."""
    if not selection:
        raise UsageError("name the tests to run in the guest (a file, a node id, -k EXPR ...)")
    return _run(f"{shlex.quote(sys.executable)} -m pytest {_GUEST_PYTEST_FLAGS} {shlex.join(selection)}", **opts)


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
    group.add_command(lab_group)
