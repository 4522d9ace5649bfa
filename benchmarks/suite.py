"""Where the test suite's time goes: run it as ``make test`` does and print two tables.

* seconds per test file (setup + call + teardown of its tests, from pytest's ``--durations=0``);
* CPU seconds per kind of process (the xdist workers themselves, ``mlflow server``, sidecars and
  their gunicorn workers, ``mlflow run`` and each entry point script, each ``mlgov`` command, chromium,
  Java, PostgreSQL...), sampled from ``/proc`` every ``--interval`` seconds while the suite runs.

Only the suite's processes count (pytest's descendants, found parent first, and PostgreSQL's
backends, all of them: run nothing else on PostgreSQL meanwhile). A process that starts and ends between two samples is not seen (nor are its children),
and one that has exited but not yet been reaped shows no command line ("unattributed"), so the CPU
table is a lower bound per kind. Nothing is written in the checkout; the pytest output goes to ``--log`` (a temporary file by
default).

    .venv/bin/python benchmarks/suite.py [--workers 2] [--top 30] [-- PYTEST ARGS...]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
# The first match names the kind (the more specific first).
KINDS = ("mlgov serve ", "mlgov server", "mlgov demo", "mlflow server", "uvicorn", "gunicorn", "mlflow run",
         "mlflow models", "projects/", "python -u -c", "mlgov ", "java", "chromedriver", "chromium", "postgres",
         "nginx", "wrk")


def kind(command: str) -> str:
    found = next((k for k in KINDS if k in command), None)
    if found is None:
        if "-m pytest" in command:
            return "pytest (the controller)"
        return "unattributed" if not command else "other"
    if found == "python -u -c":
        return "pytest-xdist workers (the tests themselves)"
    if found == "projects/":  # one kind per entry point script
        return "projects/" + command.split("projects/", 1)[1].split()[0]
    if found == "mlgov ":  # one kind per subcommand
        words = command.split("mlgov ", 1)[1].split()
        return f"mlgov {words[0]}" if words else "mlgov"
    return found.strip()


def sample(root: int, seen: dict[int, tuple[str, float]], stop: threading.Event, interval: float) -> None:
    """Keep, per process of the suite (``root`` and its descendants, seen parent first, and
    PostgreSQL's backends, which serve the suite), its kind and its latest CPU seconds."""
    ours = {root}
    while not stop.is_set():
        for entry in sorted((e for e in os.scandir("/proc") if e.name.isdigit()), key=lambda e: int(e.name)):
            pid = int(entry.name)
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                command = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if pid not in ours:
                if int(fields[1]) in ours:
                    ours.add(pid)
                elif "postgres" not in command:
                    continue
            cpu = (int(fields[11]) + int(fields[12])) / TICKS
            previous = seen.get(pid)
            seen[pid] = (previous[0] if previous and previous[0] != "unattributed" else kind(command), cpu)
        stop.wait(interval)


def per_file(log: str) -> collections.Counter:
    seconds: collections.Counter = collections.Counter()
    for line in log.splitlines():
        m = re.match(r"([\d.]+)s (?:setup|call|teardown)\s+(tests/[^:]+)::", line)
        if m:
            seconds[m.group(2)] += float(m.group(1))
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (make test: 2)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between two /proc samples")
    parser.add_argument("--top", type=int, default=30, help="rows per table")
    parser.add_argument("--log", type=Path, help="where the pytest output goes (default: a temporary file)")
    parser.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments (default: tests)")
    args = parser.parse_args()
    if not Path("/proc/self/stat").exists():
        print("benchmarks/suite.py reads /proc: Linux only", file=sys.stderr)
        return 2
    log = args.log or Path(tempfile.mkstemp(prefix="mlgov-suite-", suffix=".log")[1])
    if log.exists() and args.log is not None:
        print(f"{log} exists: give another --log (nothing is replaced)", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(args.workers),
               "--dist", "loadgroup", "--durations=0", *(args.pytest_args or ["tests"])]
    seen: dict[int, tuple[str, float]] = {}
    stop = threading.Event()
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=sample, args=(proc.pid, seen, stop, args.interval), daemon=True)
        sampler.start()
        rc = proc.wait()
    wall = time.monotonic() - started
    stop.set()
    sampler.join()
    text = log.read_text(errors="replace")
    summary = next((line for line in reversed(text.splitlines()) if " in " in line and "passed" in line), "")
    cpu: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for name, seconds in seen.values():
        cpu[name] += seconds
        count[name] += 1
    print(f"pytest exit {rc}, {wall / 60:.1f} min wall, {os.cpu_count()} cores; {summary.strip('= ')}")
    print(f"log: {log}\n")
    files = per_file(text)
    print("| test file | seconds (setup + call + teardown) |\n|---|---:|")
    for name, seconds in files.most_common(args.top):
        print(f"| {name} | {seconds:.0f} |")
    print(f"| all files | {sum(files.values()):.0f} |\n")
    print("| process kind | processes seen | CPU seconds |\n|---|---:|---:|")
    for name, seconds in cpu.most_common(args.top):
        print(f"| {name} | {count[name]} | {seconds:.0f} |")
    print(f"| all | {sum(count.values())} | {sum(cpu.values()):.0f} |")
    return rc


if __name__ == "__main__":
    sys.exit(main())
