"""Database passwords and ``mlflow run``: a URL with a password given as ``-P`` is refused and
leaves no trace of the password in the tracking database or the run's artifacts (one real
``mlflow run`` per entry point); the documented way, the password in ``MLGOV_DB_PASSWORD_<NAME>``,
works end to end against a PostgreSQL role that needs its password."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.entities import ViewType

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def mlflow_run(entry: str, *params: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    args = [str(VENV_BIN / "mlflow"), "run", str(REPO), "-e", entry, "--env-manager", "local"]
    for p in params:
        args += ["-P", p]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def assert_nowhere(secret: str, *places: Path) -> None:
    """``secret`` is in no file of ``places`` (files, or directories searched recursively)."""
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()] if place.exists() else []
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"{secret} found in {path}"


def tracking_places(fresh_sqlite: Path, tmp_path: Path) -> list[Path]:
    """The tracking database (and its journal files), this test's directory and experiment 0's artifacts."""
    artifacts = MlflowClient().get_experiment("0").artifact_location.removeprefix("file://")
    return [*fresh_sqlite.parent.glob(fresh_sqlite.name + "*"), tmp_path, Path(artifacts)]


def only_run() -> object:
    (run,) = MlflowClient().search_runs(["0"], run_view_type=ViewType.ALL)
    return run


@pytest.mark.parametrize("entry, params, checked", [
    ("acquire", ["airports_url=postgresql://erin:{S}1@127.0.0.1:5432/airlines",
                 "flights_url=postgresql://erin@127.0.0.1:5432/flights?sslmode=disable&password={S}2", "months=1"],
     ("airports_url", "flights_url")),
    ("monitor", ["model=airline-delay", "payload_url=postgresql://mona:{S}1@127.0.0.1:5432/payloads?token={S}2"],
     ("payload_url",)),
    ("pipeline", ["model=airline-delay", "payload_url=postgresql://127.0.0.1/payloads?PassWord={S}1",
                  "flights_url=sqlite:///flights.db", "airports_url=postgresql://erin:{S}2@127.0.0.1/airlines"],
     ("payload_url", "airports_url")),
])
def test_mlflow_run_with_a_password_in_a_url_leaves_it_nowhere(entry, params, checked, sqlite_registry, fresh_sqlite,
                                                              tmp_path, monkeypatch):
    secret = "Leak" + uuid.uuid4().hex[:12]
    monkeypatch.setenv("MLGOV_USER", "erin")
    proc = mlflow_run(entry, *(p.replace("{S}", secret) for p in params))
    assert proc.returncode == 1, proc.stderr[-3000:]  # mlflow run: 1 for any failed run
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "carries a password or a secret" in errors[0], proc.stderr[-3000:]
    assert secret not in errors[0] and "MLGOV_DB_PASSWORD_" in errors[0] and "erased from run" in errors[0]
    assert "Traceback" not in proc.stderr
    run = only_run()
    assert run.info.status == "FAILED"
    for key in checked:
        assert "***" in run.data.params[key] and secret not in run.data.params[key]
    assert_nowhere(secret, *tracking_places(fresh_sqlite, tmp_path))


@pytest.fixture
def password_postgres(private_postgres, tmp_path):
    """(URL without password, the password, flights SQLite URL): January's airports in a private
    cluster, readable only by a role that must give its password (scram-sha-256)."""
    from mlflow_governance.acquisition.sources import seed

    airports = private_postgres.create_database("airlines")
    flights = f"sqlite:///{tmp_path / 'flights.db'}"
    seed(flights, airports, [1])
    password = "pw/" + uuid.uuid4().hex[:10] + "@:x"  # characters a URL must encode
    admin = sa.create_engine(airports, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE erin_reader LOGIN PASSWORD '{password}'")  # no quote in it
        conn.execute(sa.text("GRANT SELECT ON ALL TABLES IN SCHEMA public TO erin_reader"))
    admin.dispose()
    hba = private_postgres.data / "pg_hba.conf"
    hba.write_text("host all erin_reader 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    private_postgres._run("pg_ctl", "-D", str(private_postgres.data), "reload")
    url = f"postgresql://erin_reader@127.0.0.1:{private_postgres.port}/airlines"
    return url, password, flights


def test_the_password_from_the_environment_works_end_to_end(password_postgres, sqlite_registry, fresh_sqlite,
                                                            tmp_path, monkeypatch, capsys):
    """projects/acquire.py, the command `mlflow run -e acquire` runs, with MLGOV_DB_PASSWORD_AIRPORTS."""
    from mlflow_governance.acquisition import databases
    from mlflow_governance.acquisition.errors import AcquisitionError

    url, password, flights = password_postgres
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    with pytest.raises(AcquisitionError) as refused:  # the role does need its password
        databases.check_connection(databases.create_engine(url, "airports"), "airports")
    assert "password" in str(refused.value)

    spec = importlib.util.spec_from_file_location("entry_acquire", REPO / "projects" / "acquire.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["acquire", "--flights-url", flights, "--airports-url", url, "--months", "1", "--output", "",
            "--model", ""]
    monkeypatch.setenv("MLGOV_DB_PASSWORD_AIRPORTS", "wrong-" + password)
    with pytest.raises(SystemExit) as exited:
        module.entry(args, prog_name="projects/acquire.py")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "password authentication failed" in err and password not in err, err

    monkeypatch.setenv("MLGOV_DB_PASSWORD_AIRPORTS", password)
    with pytest.raises(SystemExit) as exited:
        module.entry(args, prog_name="projects/acquire.py")
    assert exited.value.code == 0, capsys.readouterr().err[-2000:]
    run = [r for r in MlflowClient().search_runs(["0"]) if r.info.status == "FINISHED"][0]
    masked = url.replace("erin_reader@", "erin_reader:***@")  # the password was used, and is shown masked
    assert run.data.params["airports_source"] == masked and run.data.metrics["airport_rows"] > 0
    assert_nowhere(password, *tracking_places(fresh_sqlite, tmp_path))
