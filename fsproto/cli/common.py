"""Pieces shared by the CLI command modules: device arguments and progress bars."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from fsproto.formats.base import Progress as ProgressFn


@contextlib.contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[ProgressFn]:
    """A ``progress(done, total)`` callback drawing a rich bar on stderr (a no-op when disabled)."""
    if not enabled:
        yield lambda done, total: None
        return
    # Imported here: rich.progress costs ~20 ms, and only a terminal ever sees a bar.
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    # On stderr, as promised: rich's default console is stdout, which `get`/`cat` may be piping.
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def one_line(message: str) -> str:
    """*message* with control characters escaped, so it prints as exactly one line.

    Messages quote names read from possibly corrupt images; a raw newline, ``\\x1c`` or ESC
    from a hostile image must neither split the error line nor drive the user's terminal.
    """
    if message.isprintable():  # nearly always: one C call instead of one per character
        return message
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
