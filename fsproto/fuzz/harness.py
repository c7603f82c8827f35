"""The libFuzzer process: ``python -m fsproto.fuzz.harness TARGET [libFuzzer flags] CORPUS...``.

The target (and, through the format registry, the format's modules) is loaded first, then
``atheris.instrument_all()`` adds coverage to every Python function loaded (fsproto and
construct, which does the parsing); libFuzzer never returns, so ``fsproto fuzz`` runs this as a
child process.
"""

from __future__ import annotations

import sys

import atheris

from fsproto.fuzz.targets import target as _target


def main() -> None:
    name = sys.argv[1]
    run = _target(name)
    try:
        run(b"")  # import everything the target reaches lazily, so it is instrumented too
    except Exception:  # noqa: BLE001 - libFuzzer will find and report it properly
        pass
    atheris.instrument_all()
    atheris.Setup([sys.argv[0]] + sys.argv[2:], run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
