"""Security review finding 6: ``--output`` never silently replaces a file, never writes into a
directory or a special file, and an unwritable path is one ``Error:`` line (exit 2), not a traceback.

The rule lives in `mlflow_governance.safe.outputs`; ``mlgov acquire``, ``mlgov factsheet`` and the
``acquire`` MLproject entry point all use it, and it is checked before any work: no database is
read and no MLflow run or experiment is created for a refused output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from mlflow_governance.cli.main import cli
from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.safe import outputs
from tests.conftest import acting, free_port, unique

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
MLGOV = str(VENV_BIN / "mlgov")
OLD = "an unrelated file, not a training set\n"


def run(*args: str, user: str | None = None):
    with acting(user):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_error_line(result, *fragments: str) -> str:
    """The command failed with exit 2 and exactly one ``Error:`` line on stderr (no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def no_mlflow_work(experiment: str = "never-created") -> None:
    client = MlflowClient()
    assert client.get_experiment_by_name(experiment) is None
    assert client.search_runs(experiment_ids=["0"]) == []


def dead_db() -> str:
    """A database nobody listens on: reading it would fail with a connection error, not ours."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"


def acquire_args(flights: str, airports: str, *extra: str) -> list[str]:
    return ["acquire", "--flights-url", flights, "--airports-url", airports, "--months", "1",
            "--experiment", "never-created", *extra]


def governed_model() -> str:
    name = unique("sheet")
    with acting("olivia"):
        GovernanceClient().initiate(name, use_case="delay prediction")
    return name


# --- the rule itself --------------------------------------------------------------------------


def test_rule_refuses_existing_files_without_force_and_special_files_always(tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text(OLD)
    with pytest.raises(ValueError, match=r"notes\.txt already exists; pass --force to replace it"):
        outputs.check_output_path(existing)
    assert outputs.check_output_path(existing, force=True) == existing
    assert outputs.check_output_path(tmp_path / "new.md") == tmp_path / "new.md"
    for special in (tmp_path, Path("/dev/null")):
        for force in (False, True):
            with pytest.raises(ValueError, match="not a regular file: it is never replaced, not even with --force"):
                outputs.check_output_path(special, force)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is a FIFO"):
        outputs.check_output_path(fifo, True)
    with pytest.raises(ValueError, match="cannot create a file in /proc"):
        outputs.check_output_path("/proc/version", True)  # a "regular" file of a read-only kernel view
    with pytest.raises(ValueError, match=r"directory .*missing does not exist"):
        outputs.check_output_path(tmp_path / "missing" / "x.md")
    # The acquisition creates missing parents: an existing ancestor that accepts files is enough.
    assert outputs.check_output_path(tmp_path / "missing" / "x.md", make_parents=True)
    with pytest.raises(ValueError, match=r"notes\.txt is not a directory"):
        outputs.check_output_path(existing / "x.md", make_parents=True)
    assert not (tmp_path / "missing").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "pipe"]  # the probes are gone
    assert existing.read_text() == OLD


def test_install_never_replaces_a_file_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "sheet.md"
    outputs.check_output_path(target)
    tmp = outputs.temporary_path(target)
    tmp.write_text("new")
    target.write_text(OLD)  # another process got there first
    with pytest.raises(ValueError, match="appeared while it was being written; pass --force"):
        outputs.install(tmp, target)
    assert target.read_text() == OLD and not tmp.exists()
    tmp.write_text("new")
    outputs.install(tmp, target, force=True)
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]


def test_permission_denied_is_one_line(tmp_path):
    """A directory that refuses new files: a read-only one, or (root may write anywhere else) sysfs."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        reason = "(Permission denied)"
    else:
        locked = Path("/sys/kernel")
        if not locked.is_dir():
            pytest.skip("no /sys/kernel to refuse root a new file")
        reason = "("  # EACCES or EROFS, depending on how /sys is mounted
    target = locked / "sheet.md"
    for args in (["factsheet", "any-model"], acquire_args(dead_db(), dead_db())):
        r = run(*args, "--output", str(target), "--force")
        one_error_line(r, f"Error: cannot write {target}: cannot create a file in {locked} {reason}")
    assert not target.exists()


# --- mlgov acquire ----------------------------------------------------------------------------


def test_acquire_refuses_an_existing_file_before_any_work(sqlite_registry, tmp_path):
    """The finding as found: --output onto an unrelated file. Now refused before the model, the
    databases (dead here: reading them would be another error) or MLflow are touched."""
    existing = tmp_path / "notes.txt"
    existing.write_text(OLD)
    r = run(*acquire_args(dead_db(), dead_db(), "--output", str(existing), "--model", "no-such-model"), user="erin")
    one_error_line(r, f"output {existing} already exists", "pass --force")
    assert existing.read_text() == OLD
    no_mlflow_work()
    r = run(*acquire_args(dead_db(), dead_db(), "--output", "notes.txt", "--json"))  # relative, JSON mode
    one_error_line(r, f"{existing} already exists")
    assert r.stdout == ""
    no_mlflow_work()


def test_acquire_with_force_replaces_the_file(sqlite_registry, acquisition_sources, tmp_path):
    existing = tmp_path / "training.parquet"
    existing.write_text(OLD)
    url = acquisition_sources.sqlite_url
    r = run(*acquire_args(url, url, "--output", str(existing), "--force", "--json"))
    assert r.exit_code == 0, r.output
    got = pd.read_parquet(existing)
    assert len(got) > 0 and "FLIGHT_ID" in got.columns
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith((".part", ".probe"))] == []
    assert len(MlflowClient().search_runs([MlflowClient().get_experiment_by_name("never-created").experiment_id])) == 1


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("special", ["directory", "/proc/version", "/dev/null", "fifo"])
def test_acquire_never_writes_into_a_directory_or_special_file(sqlite_registry, tmp_path, special, force):
    if special == "directory":
        target = tmp_path / "data"
        target.mkdir()
        (target / "keep.txt").write_text(OLD)
        expected = "is a directory, not a regular file: it is never replaced, not even with --force"
    elif special == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
        expected = "is a FIFO (named pipe), not a regular file"
    else:
        target = Path(special)
        expected = ("cannot write /proc/version: cannot create a file in /proc" if special.startswith("/proc")
                    else "/dev/null is a character device, not a regular file")
    r = run(*acquire_args(dead_db(), dead_db(), "--output", str(target), *(["--force"] if force else [])))
    one_error_line(r, expected)
    no_mlflow_work()
    if special == "directory":
        assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_acquire_unwritable_paths_are_one_line(sqlite_registry, tmp_path):
    parent_is_a_file = tmp_path / "notes.txt"
    parent_is_a_file.write_text(OLD)
    cases = [
        (parent_is_a_file / "sub" / "training.parquet", f"{parent_is_a_file} is not a directory"),
        (Path("/proc/no-such-dir/training.parquet"), "cannot create a file in /proc"),
    ]
    for target, expected in cases:
        r = run(*acquire_args(dead_db(), dead_db(), "--output", str(target), "--force"))
        one_error_line(r, f"cannot write {target}", expected)
    no_mlflow_work()
    assert parent_is_a_file.read_text() == OLD


# --- mlgov factsheet --------------------------------------------------------------------------


def test_factsheet_refuses_an_existing_file_and_force_replaces_it(sqlite_registry, tmp_path):
    model = governed_model()
    existing = tmp_path / "notes.md"
    existing.write_text(OLD)
    r = run("factsheet", model, "--output", str(existing))
    one_error_line(r, f"output {existing} already exists", "pass --force")
    assert existing.read_text() == OLD
    # Checked before the registry is read: a model that does not exist is not the error.
    r = run("factsheet", unique("ghost"), "--output", str(existing))
    one_error_line(r, "already exists")
    r = run("factsheet", model, "--output", str(existing), "--force")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"fact sheet written to {existing}"
    assert existing.read_text().startswith(f"# Fact sheet: {model}")
    r = run("factsheet", model, "--format", "html", "--output", "new.html")  # a new file needs no --force
    assert r.exit_code == 0 and "<table>" in (tmp_path / "new.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".md", ".html", ".part", ".probe")) == [
        "new.html", "notes.md"]


@pytest.mark.parametrize("force", [False, True])
def test_factsheet_never_writes_into_a_directory_or_special_file(sqlite_registry, tmp_path, force):
    model = governed_model()
    directory = tmp_path / "sheets"
    directory.mkdir()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    flag = ["--force"] if force else []
    for target, expected in [
        (directory, "is a directory, not a regular file"),
        (Path("/dev/null"), "/dev/null is a character device"),
        (fifo, "is a FIFO (named pipe)"),
        (Path("/proc/version"), "cannot write /proc/version: cannot create a file in /proc"),
        (tmp_path / "missing" / "sheet.md", f"directory {tmp_path / 'missing'} does not exist"),
    ]:
        r = run("factsheet", model, "--output", str(target), *flag)
        one_error_line(r, expected)
    assert not any(directory.iterdir()) and not (tmp_path / "missing").exists()


def test_real_processes_print_one_line(sqlite_registry, tmp_path):
    """The findings as reported, in real ``mlgov`` processes: exit 2 and one stderr line."""
    existing = tmp_path / "notes.txt"
    existing.write_text(OLD)
    for args, expected in [
        (["factsheet", "m", "--output", "/proc/version", "--force"], "Error: cannot write /proc/version"),
        (acquire_args(dead_db(), dead_db(), "--output", str(existing)), f"Error: output {existing} already exists"),
    ]:
        p = subprocess.run([MLGOV, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert p.returncode == 2 and p.stdout == "", (p.returncode, p.stdout, p.stderr)
        (line,) = p.stderr.strip().splitlines()
        assert line.startswith(expected), line
    assert existing.read_text() == OLD
    no_mlflow_work()


# --- mlflow run . -e acquire ------------------------------------------------------------------


def mlflow_run(*params: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLGOV_USER="erin", PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    args = [str(VENV_BIN / "mlflow"), "run", str(REPO), "-e", "acquire", "--env-manager", "local"]
    for p in params:
        args += ["-P", p]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def test_mlflow_run_acquire_refuses_without_force_and_replaces_with_it(sqlite_registry, acquisition_sources, tmp_path):
    existing = tmp_path / "training.parquet"
    existing.write_text(OLD)
    url = acquisition_sources.sqlite_url
    proc = mlflow_run(f"flights_url={url}", f"airports_url={url}", "months=1", f"output={existing}")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: output {existing} already exists; pass --force to replace it"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr.split("Error:")[-1]
    assert existing.read_text() == OLD
    (run_,) = MlflowClient().search_runs(["0"])  # the run `mlflow run` itself started, failed at once
    assert run_.info.status == "FAILED" and "flights_reader" not in run_.data.params
    proc = mlflow_run(f"flights_url={url}", f"airports_url={url}", "months=1", f"output={existing}", "force=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(pd.read_parquet(existing)) > 0
