"""CLI commands for the hardware core: repl, pci ls/config, peek, poke, hw-check.

Parsing only; the actions are :mod:`fsproto.hw` calls. Offsets and values accept any Python
integer literal (``0x1c``, ``28``, ``0o34``).
"""

from __future__ import annotations

import click

WIDTHS = ("8", "16", "32", "64")


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an integer (e.g. 0x1c)", param_hint=what) from None


def _window(offset: int, width: int) -> tuple[int, int]:
    # Map an 8-aligned window around the access so the Region reports misalignment per width.
    base = offset - offset % 8
    return base, -(-(offset - base + width) // 8) * 8


@click.command("repl")
@click.argument("script", required=False, type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1)
def repl_cmd(script: str | None, args: tuple[str, ...]) -> int:
    """Python REPL with the bring-up words preloaded, or run SCRIPT with them.

    Words: malloc free mpin munpin vir2phys pagemap mmap r8 r16 r32 r64 w8 w16 w32 w64 pci regs.
    """
    from fsproto.hw import repl

    if script is None:
        return repl.interact()
    return repl.run_script(script, args)


@click.group("pci")
def pci_group() -> None:
    """List PCI functions and read their config space (read-only)."""


@pci_group.command("ls")
def pci_ls() -> int:
    """List this machine's PCI functions: address, IDs, class, driver, who uses it."""
    from rich.console import Console
    from rich.table import Table

    from fsproto.hw.pci import devices
    from fsproto.hw.safety import ownership

    table = Table(box=None)
    for col in ("BDF", "ID", "class", "driver", "BARs", "in use by"):
        table.add_column(col)
    for dev in devices():
        own = ownership(dev.bdf)
        bars = " ".join(f"{b.index}:{b.size // 1024}K" for b in dev.bars())
        use = ", ".join(own.mounts) or ("driver" if own.kernel_owned else "")
        table.add_row(dev.bdf, f"{dev.vendor_id:04x}:{dev.device_id:04x}", f"{dev.class_code:06x}",
                      dev.driver or "-", bars or "-", use or "-")
        dev.close()
    Console(width=120).print(table)
    return 0


@pci_group.command("config")
@click.argument("bdf")
@click.option("--decode", is_flag=True, help="Decode the header registers, capabilities and BARs.")
def pci_config(bdf: str, decode: bool) -> int:
    """Hex dump (or --decode) the config space of BDF (e.g. 00:02.0)."""
    from fsproto.hw.pci import SysfsPci

    with SysfsPci(bdf) as dev:
        if not decode:
            click.echo(dev.config.hexdump(0, dev.config.size))
            return 0
        click.echo(f"{dev.bdf}  {dev.vendor_id:04x}:{dev.device_id:04x}  class {dev.class_code:06x}  "
                   f"driver {dev.driver or '-'}")
        click.echo(dev.regs.dump())
        for cap in dev.capabilities():
            click.echo(f"capability {cap}")
        for bar in dev.bars():
            click.echo(str(bar))
    return 0


@click.command("peek")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("offset")
@click.option("--width", type=click.Choice(WIDTHS), default="32", show_default=True, help="Access width in bits.")
@click.option("--force", is_flag=True, help="Map even if a kernel driver or a mount owns the device.")
def peek_cmd(path: str, offset: str, width: str, force: bool) -> int:
    """Read one WIDTH-bit value at OFFSET of PATH (a file, resourceN, /dev/mem, /dev/uioN)."""
    from fsproto.hw.vocab import mmap

    off, bits = _int(offset, "OFFSET"), int(width)
    if off < 0:
        raise click.BadParameter("must not be negative", param_hint="OFFSET")
    base, size = _window(off, bits // 8)
    with mmap(path, size, base, force=force) as region:
        value = region.peek(off - base, bits)
    click.echo(f"{value:#0{bits // 4 + 2}x}")
    return 0


@click.command("poke")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("offset")
@click.argument("value")
@click.option("--width", type=click.Choice(WIDTHS), default="32", show_default=True, help="Access width in bits.")
@click.option("--force", is_flag=True, help="Write even if a kernel driver or a mount owns the device.")
@click.option("--dry-run", is_flag=True, help="Log the store instead of doing it.")
def poke_cmd(path: str, offset: str, value: str, width: str, force: bool, dry_run: bool) -> int:
    """Write one WIDTH-bit VALUE at OFFSET of PATH (one store of exactly that width)."""
    from fsproto.hw.vocab import mmap

    off, val, bits = _int(offset, "OFFSET"), _int(value, "VALUE"), int(width)
    if off < 0:
        raise click.BadParameter("must not be negative", param_hint="OFFSET")
    base, size = _window(off, bits // 8)
    with mmap(path, size, base, writable=True, force=force, dry_run=dry_run) as region:
        region.poke(off - base, val, bits)
        if dry_run:
            click.echo(f"dry-run: would write {val:#0{bits // 4 + 2}x} ({bits}-bit) at {off:#x} of {path}")
    return 0


@click.command("hw-check")
def hw_check_cmd() -> int:
    """Check what this machine offers user-space drivers (privileges, lockdown, IOMMU, uio/vfio,
    hugepages, memlock, QEMU); read-only."""
    from fsproto.hw.envcheck import environment

    for check in environment():
        click.echo(str(check))
    return 0


def register(group: click.Group) -> None:
    """Add this module's commands to *group*."""
    for cmd in (repl_cmd, pci_group, peek_cmd, poke_cmd, hw_check_cmd):
        group.add_command(cmd)
