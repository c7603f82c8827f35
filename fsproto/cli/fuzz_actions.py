"""Action behind ``fsproto fuzz``: build the seed corpus, run the libFuzzer child, report.

The child (:mod:`fsproto.fuzz.harness`) gets libFuzzer's own limits: ``-max_len`` (image size
bound), ``-rss_limit_mb`` and ``-malloc_limit_mb`` (memory per case), ``-timeout`` (seconds per
case), ``-max_total_time``; crash files go to the output directory as ``crash-<sha1>``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

from rich.console import Console

from fsproto.cli.common import progress_bar
from fsproto.errors import EXIT_OK, EXIT_UNCORRECTED, UsageError
from fsproto.fuzz.corpus import build
from fsproto.fuzz.targets import EXTRA_TARGETS

_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)")
_DONE = re.compile(r"^Done (\d+) runs")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


@dataclass
class FuzzResult:
    target: str
    executions: int = 0
    coverage: int = 0
    features: int = 0
    seconds: float = 0.0
    artifacts: list[str] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)


def run_fuzzer(target: str, *, seconds: int, corpus: str, out_dir: str, max_len: int, rss_mb: int, case_timeout: int,
               progress=None) -> FuzzResult:
    if target not in EXTRA_TARGETS:
        from fsproto.formats import get

        get(target)  # UsageError for an unknown name, before starting anything
    os.makedirs(out_dir, exist_ok=True)
    if not os.path.isdir(corpus) or not os.listdir(corpus):
        build(target, corpus, max_len)
    argv = [sys.executable, "-m", "fsproto.fuzz.harness", target, f"-max_total_time={seconds}", f"-max_len={max_len}",
            f"-rss_limit_mb={rss_mb}", f"-malloc_limit_mb={rss_mb}", f"-timeout={case_timeout}",
            f"-artifact_prefix={os.path.join(os.path.abspath(out_dir), '')}", "-print_final_stats=1"]
    argv.append(corpus)
    res = FuzzResult(target)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
    assert proc.stderr is not None
    tail: list[str] = []
    for line in proc.stderr:
        line = line.rstrip("\n")
        tail = (tail + [line])[-40:]
        if m := _STATUS.match(line):
            res.executions, res.coverage, res.features = int(m[1]), int(m[2]), int(m[3])
        elif m := _DONE.match(line):
            res.executions = max(res.executions, int(m[1]))
        if m := _ARTIFACT.search(line):
            res.artifacts.append(m[1])
        if progress:
            progress(min(seconds, int(time.monotonic() - t0)), seconds)
    proc.wait()
    res.seconds = time.monotonic() - t0
    res.log_tail = tail
    # The directory is the truth (a crash from an earlier run in the same OUT counts too).
    for name in sorted(os.listdir(out_dir)):
        p = os.path.join(out_dir, name)
        if name.startswith(("crash-", "timeout-", "oom-", "leak-")) and p not in res.artifacts:
            res.artifacts.append(p)
    return res


def fuzz(target: str, seconds: int, corpus: str | None, out_dir: str, max_len: int, rss_mb: int, case_timeout: int,
         show_progress: bool, console: Console) -> int:
    if seconds < 1:
        raise UsageError("--seconds must be at least 1")
    corpus = corpus or os.path.join(out_dir, "corpus")
    with progress_bar(f"fuzz {target}", enabled=show_progress) as progress:
        res = run_fuzzer(target, seconds=seconds, corpus=corpus, out_dir=out_dir, max_len=max_len, rss_mb=rss_mb,
                         case_timeout=case_timeout, progress=progress)
    rate = res.executions / res.seconds if res.seconds else 0
    console.print(f"{target}: {res.executions} executions in {res.seconds:.0f} s ({rate:.0f}/s), "
                  f"coverage {res.coverage} edges, {res.features} features, corpus {corpus}", markup=False)
    if not res.artifacts:
        console.print("no crash found", markup=False)
        return EXIT_OK
    for a in res.artifacts:
        console.print(f"CRASH {a}", markup=False)
    trace = [l for l in res.log_tail if l.startswith(("Traceback", "  File", "===", "Uncaught")) or "Error" in l]
    for l in trace[-12:]:
        console.print(l, markup=False)
    return EXIT_UNCORRECTED
