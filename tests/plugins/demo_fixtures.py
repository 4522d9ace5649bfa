"""Session fixture ``demo_run``: `mlgov demo` run once, as a real process, for the tests that read
what it leaves (the walk-through's own test, and the trace of a prediction served from its
registry). Treat its folder as read-only: copy the registry before changing it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["DemoRun", "demo_run"]

MLGOV = str(Path(sys.executable).parent / "mlgov")


@dataclass(frozen=True)
class DemoRun:
    workdir: Path  # --workdir
    cwd: Path  # where it ran (nothing may be written here)
    env: dict[str, str]
    stdout: str
    stderr: str
    returncode: int

    @property
    def db(self) -> Path:
        return self.workdir / "mlflow.db"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    cwd = tmp_path_factory.mktemp("demo-cwd")
    workdir = cwd / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    p = subprocess.run([MLGOV, "demo", "--workdir", str(workdir)], env=env, capture_output=True, text=True,
                       cwd=cwd, timeout=900)
    return DemoRun(workdir, cwd, env, p.stdout, p.stderr, p.returncode)
