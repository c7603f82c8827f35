"""The README's examples run as shown."""

from __future__ import annotations

import shutil

import pytest

from conftest import PROJECT_ROOT


def _repl_session() -> tuple[list[str], list[str]]:
    """(statements, expected output lines) of the README's ``$ fsproto repl`` block."""
    lines = (PROJECT_ROOT / "README.md").read_text().splitlines()
    start = lines.index("    $ fsproto repl")
    code, expected = [], []
    for line in lines[start + 1:]:
        if not line.startswith("    "):
            break
        body = line[4:]
        if body.startswith(">>> "):
            code.append(body[4:].split("  #")[0].rstrip())
        else:
            expected.append(body.replace("...", "").strip())
    return code, expected


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86 (tools/setup.sh)")
@pytest.mark.timeout(120)
def test_readme_bringup_session_runs(capsys) -> None:
    """Each ``>>>`` statement runs in the REPL's namespace, compiled as the console compiles a
    line ("single": expression values are echoed), and every output line shown appears."""
    from fsproto.hw.repl import namespace

    code, expected = _repl_session()
    assert len(code) >= 5 and expected
    ns = namespace()
    try:
        for statement in code:
            for part in statement.split("; "):
                exec(compile(part, "<README>", "single"), ns)
    finally:
        if "q" in ns:
            ns["q"].close()
    out = capsys.readouterr().out
    for want in expected:
        assert want in out, (want, out)
