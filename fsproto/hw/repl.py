"""``fsproto repl``: a Python console preloaded with the bring-up vocabulary, or a script runner.

The console has readline history (``~/.fsproto_history``) and tab completion (rlcompleter,
which also completes register names on a ``regs`` object). A known fsproto error prints one
line instead of a traceback, so a refused poke does not bury the prompt. Scripts run with the
same namespace; an fsproto error ends them with one line and a non-zero status.
"""

from __future__ import annotations

import code
import os
import sys
import traceback
from typing import Any, Sequence

from fsproto.errors import EXIT_OPERATIONAL, EXIT_USAGE, FsprotoError

BANNER = """fsproto hardware REPL -- {words}
  bar = pci("00:04.0").map_bar(0, writable=True)   # refused while a kernel driver owns it
  nvme = regs(bar, "nvme"); nvme.CAP.MQES; r32(bar, 0x1c)
help(word) for details; Ctrl-D to leave."""

HISTORY = os.path.expanduser("~/.fsproto_history")


def namespace() -> dict[str, Any]:
    """The preloaded words plus the modules behind them."""
    import fsproto.hw as hw
    from fsproto.hw import vocab
    from fsproto.hw.regmaps import AHCI_HBA, AHCI_PORT, NVME, PCI_CONFIG, ahci_port, nvme_with_doorbells

    ns: dict[str, Any] = {name: getattr(vocab, name) for name in vocab.__all__}
    from fsproto.hw.backends.qtest import QtestMachine
    from fsproto.hw.interrupts import wait_irq  # wait_irq(VfioDevice(bdf).enable_msix(2)[1], timeout=1.0)

    ns.update(hw=hw, QtestMachine=QtestMachine, NVME=NVME, AHCI_HBA=AHCI_HBA, AHCI_PORT=AHCI_PORT, PCI_CONFIG=PCI_CONFIG,
              ahci_port=ahci_port, nvme_with_doorbells=nvme_with_doorbells, Region=hw.Region, wait_irq=wait_irq)
    return ns


def completer(ns: dict[str, Any]) -> Any:
    """rlcompleter that never reads a register to complete its name.

    The stock completer calls ``getattr`` on every candidate attribute; on a :class:`Regs` that
    is a device read (and some registers clear on read), so register names come from ``dir``.
    """
    import rlcompleter

    from fsproto.hw.regs import Regs

    class _Completer(rlcompleter.Completer):
        def attr_matches(self, text: str) -> list[str]:
            expr, dot, attr = text.rpartition(".")
            if dot and expr.isidentifier() and isinstance(self.namespace.get(expr), Regs):
                return [f"{expr}.{name}" for name in dir(self.namespace[expr]) if name.startswith(attr)]
            return super().attr_matches(text)

    return _Completer(ns)


class _Console(code.InteractiveConsole):
    def showtraceback(self) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, FsprotoError):
            self.write(f"error: {type(exc).__name__}: {exc}\n")
        else:
            super().showtraceback()


def interact(ns: dict[str, Any] | None = None) -> int:
    """Run the console until EOF; returns 0."""
    ns = namespace() if ns is None else ns
    try:
        import readline

        readline.set_completer(completer(ns).complete)
        readline.parse_and_bind("tab: complete")
        try:
            readline.read_history_file(HISTORY)
        except OSError:
            pass
    except ImportError:  # no readline on this Python: still usable, just without history
        readline = None  # type: ignore[assignment]
    words = " ".join(sorted(k for k in ns if k.islower() and k not in ("hw",)))
    try:
        _Console(ns).interact(banner=BANNER.format(words=words), exitmsg="")
    finally:
        if readline is not None:
            try:
                readline.write_history_file(HISTORY)
            except OSError:
                pass
    return 0


def run_script(path: str, argv: Sequence[str] = (), ns: dict[str, Any] | None = None) -> int:
    """Run a bring-up script with the vocabulary preloaded; returns an exit status.

    FsprotoError propagates (the CLI prints one line); a bug in the script prints its traceback
    and returns EXIT_OPERATIONAL; a syntax error returns EXIT_USAGE.
    """
    ns = namespace() if ns is None else ns
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except OSError as e:
        from fsproto.errors import UsageError

        raise UsageError(f"cannot read script: {e.strerror}", device=path) from e
    try:
        compiled = compile(source, path, "exec")
    except SyntaxError as e:
        print(f"fsproto: {path}:{e.lineno}: syntax error: {e.msg}", file=sys.stderr)
        return EXIT_USAGE
    ns.update(__name__="__main__", __file__=path)
    saved = sys.argv
    sys.argv = [path, *argv]
    try:
        exec(compiled, ns)
    except FsprotoError:
        raise
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception:
        # The script's own bug: show its frames only (skip this runner's frame).
        etype, value, tb = sys.exc_info()
        traceback.print_exception(etype, value, tb.tb_next if tb else None)
        return EXIT_OPERATIONAL
    finally:
        sys.argv = saved
    return 0
