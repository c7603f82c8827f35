"""The CLI frame: help everywhere, one-line errors, exit statuses."""

from __future__ import annotations

import subprocess
import sys

from fsproto.cli import cli, group


def test_help_exits_zero(capsys):
    assert cli(["--help"]) == 0
    assert "fsproto" in capsys.readouterr().out


def test_every_command_has_help(capsys):
    for name in group.commands:
        assert cli([name, "--help"]) == 0, name
    capsys.readouterr()


def test_unknown_command_is_a_usage_error(capsys):
    assert cli(["no-such-command"]) == 16
    assert "No such command" in capsys.readouterr().err


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "fsproto", "--version"], capture_output=True, text=True, check=True)
    assert "fsproto" in out.stdout
