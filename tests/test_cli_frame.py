"""The CLI frame: help everywhere, one-line errors, exit statuses."""

from __future__ import annotations

import subprocess
import sys

import click

from fsproto.cli import cli, group


def test_help_exits_zero(capsys):
    assert cli(["--help"]) == 0
    assert "fsproto" in capsys.readouterr().out


def _commands(g: click.Group, path: list[str]) -> list[list[str]]:
    """Every command path, subcommands of groups (pci, lab, overlay) included."""
    out = []
    for name, cmd in g.commands.items():
        out.append(path + [name])
        if isinstance(cmd, click.Group):
            out += _commands(cmd, path + [name])
    return out


def test_every_command_has_help(capsys):
    paths = _commands(group, [])
    assert any(len(p) == 2 for p in paths)  # the walk reaches subcommands
    for path in paths:
        assert cli([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        # click prints a usage line even for a command without a docstring: require the text.
        summary = out.split("\n\n", 2)[1].strip() if out.count("\n\n") >= 2 else ""
        assert out.startswith("Usage: fsproto " + " ".join(path)) and summary, (path, out[:300])


def test_unknown_command_is_a_usage_error(capsys):
    assert cli(["no-such-command"]) == 16
    assert "No such command" in capsys.readouterr().err


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "fsproto", "--version"], capture_output=True, text=True, check=True)
    assert "fsproto" in out.stdout
