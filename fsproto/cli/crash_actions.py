"""Action behind ``fsproto crashcheck``: pick the workload, explore, draw the table, save failures."""

from __future__ import annotations

import os

from rich.console import Console
from rich.table import Table

from fsproto.cli.common import progress_bar
from fsproto.crash.builtins import BUILTINS, builtin
from fsproto.crash.runner import CrashRun, explore, save_failures
from fsproto.crash.workload import WorkloadScript, load_workload_file
from fsproto.errors import EXIT_OK, EXIT_UNCORRECTED, UsageError
from fsproto.formats import get


def pick_workload(workload: str | None, builtin_name: str | None, many: int) -> WorkloadScript:
    if bool(workload) == bool(builtin_name):
        raise UsageError("give exactly one of --workload FILE.py and --builtin NAME")
    if workload:
        return load_workload_file(workload)
    try:
        return builtin(builtin_name or "", many=many)
    except KeyError:
        raise UsageError(f"unknown built-in workload {builtin_name!r}; known: {', '.join(BUILTINS)}") from None


def table(run: CrashRun) -> Table:
    c = run.counts()
    t = Table(title=f"crashcheck {run.format} / {run.workload} / {run.order}")
    for col in ("writes", "flushes", "states", "clean", "repaired", "lost data", "unreadable"):
        t.add_column(col, justify="right")
    r = run.recording
    t.add_row(str(len(r.writes)), str(len(r.flush_points)), f"{len(run.results)} of {run.considered}",
              str(c["clean"]), str(c["repaired"]), str(c["lost"]), str(c["unreadable"]))
    return t


def crashcheck(fmt_name: str, workload: str | None, builtin_name: str | None, order: str, max_states: int,
               jobs: int, seed: int, block_size: int | None, out_dir: str, many: int, show_progress: bool,
               console: Console) -> int:
    fmt = get(fmt_name)
    script = pick_workload(workload, builtin_name, many)
    os.makedirs(out_dir, exist_ok=True)
    with progress_bar(f"crash states ({fmt.name}/{script.name})", enabled=show_progress) as progress:
        run = explore(fmt, script, order=order, max_states=max_states, jobs=jobs, seed=seed,
                      block_size=block_size, trace_path=os.path.join(out_dir, "workload.trace"), progress=progress)
    console.print(table(run))
    if run.passed:
        console.print("pass: every crash state is fsck-clean or repairable with nothing fsync'd lost")
        return EXIT_OK
    saved = save_failures(run, out_dir)
    for (state, verdict), path in zip(run.failures, saved):
        console.print(f"FAIL {path}: {state.kind}, {state.size} write(s): {verdict.verdict}: {verdict.detail}", markup=False)
    if len(run.failures) > len(saved):
        console.print(f"... and {len(run.failures) - len(saved)} more failing state(s)")
    return EXIT_UNCORRECTED
