"""`mlgov` in the test's own process: what the command prints and exits with, without starting Python.

A real ``mlgov`` process costs some 5 CPU seconds before it does anything (importing MLflow alone
takes most of them). Where a test's subject is what a command says and does, not the process
(its start, its signals, what Python prints on the way out), `mlgov` runs it through click's
CliRunner with exactly the environment and working directory a subprocess would get, and returns
the same `subprocess.CompletedProcess`. Tests of the process itself keep using ``subprocess``
(tests/test_cli_errors.py, the README, the demo, the CI script).
"""

from __future__ import annotations

import os
import subprocess
import traceback
from contextlib import chdir
from pathlib import Path


def mlgov(*args: str, env: dict[str, str] | None = None, cwd: Path | str | None = None) -> subprocess.CompletedProcess:
    """Run ``mlgov ARGS`` in this process with environment ``env`` (the whole of it, as
    ``subprocess.run(env=...)`` would; default: this process's) in ``cwd``. An exception that
    escapes the command is returned as a real process would show it: exit 1 and its traceback on
    stderr."""
    from click.testing import CliRunner

    from mlflow_governance.cli.main import cli

    delta: dict[str, str | None] = {}
    if env is not None:
        delta = {key: None for key in os.environ if key not in env}
        delta.update(env)
    with chdir(cwd or os.getcwd()):
        result = CliRunner().invoke(cli, [str(a) for a in args], env=delta, prog_name="mlgov")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["mlgov", *map(str, args)], result.exit_code, result.stdout, stderr)
