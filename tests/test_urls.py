"""`mlflow_governance.safe.urls.mask_url` and the places that show URLs through it; the entry points'
database passwords (`mlflow_governance.safe.project_secrets`) without a real ``mlflow run``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from mlflow.exceptions import MlflowException

from mlflow_governance.safe import project_secrets
from mlflow_governance.safe.urls import UNPARSABLE, has_secret, mask_url, scrub

SECRET = "S3cr3tValue"


@pytest.mark.parametrize("url, shown", [
    (f"postgresql://erin:{SECRET}@db.example.com:5432/airlines", "postgresql://erin:***@db.example.com:5432/airlines"),
    (f"postgresql+psycopg2://erin:{SECRET}@db/airlines?sslmode=require",
     "postgresql+psycopg2://erin:***@db/airlines?sslmode=require"),
    (f"postgresql://db/airlines?password={SECRET}", "postgresql://db/airlines?password=***"),
    (f"postgresql://db/airlines?sslmode=require&PassWord={SECRET}&application_name=x",
     "postgresql://db/airlines?sslmode=require&PassWord=***&application_name=x"),
    (f"postgresql://db/a?sslpassword={SECRET}&passwd={SECRET}&pwd={SECRET}",
     "postgresql://db/a?sslpassword=***&passwd=***&pwd=***"),
    (f"mysql+pymysql://u@h/d?secret={SECRET}&token={SECRET}&key={SECRET}&api_key={SECRET}",
     "mysql+pymysql://u@h/d?secret=***&token=***&key=***&api_key=***"),
    (f"https://h/x?access_token={SECRET}&Authorization={SECRET}&auth_token={SECRET}&q=1",
     "https://h/x?access_token=***&Authorization=***&auth_token=***&q=1"),
    (f"postgresql://db/a?pass%77ord={SECRET}", "postgresql://db/a?pass%77ord=***"),  # percent-encoded key
    (f"https://user:{SECRET}@example.com/path?x=1#frag", "https://user:***@example.com/path?x=1#frag"),
    (f"db2+ibm_db://db2inst1:{SECRET}@db2:50000/FLIGHTS", "db2+ibm_db://db2inst1:***@db2:50000/FLIGHTS"),
    # SQLAlchemy reads a password up to the first '@' (a '/' or '?' in it included); the URL
    # standard ends the authority at the last '@' before the first '/': the wider reading wins.
    (f"postgresql://erin:a/{SECRET}@db/airlines", "postgresql://erin:***@db/airlines"),
    (f"postgresql://erin:a@{SECRET}@db/airlines", "postgresql://erin:***@db/airlines"),
    (f"postgresql://erin:a?{SECRET}@db/airlines", "postgresql://erin:***@db/airlines"),
    (f"postgresql://erin:{SECRET}@[::1]:5432/airlines", "postgresql://erin:***@[::1]:5432/airlines"),
    (f"https://proxy/x?next=https://u:{SECRET}@inner/", "https://proxy/x?next=https://u:***@inner/"),
    # nothing secret: shown as it is
    ("sqlite:////etc/passwd", "sqlite:////etc/passwd"),
    ("sqlite:///data/a@b.db", "sqlite:///data/a@b.db"),
    ("postgresql://erin@db:5432/airlines?sslmode=require", "postgresql://erin@db:5432/airlines?sslmode=require"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_mask_url_hides_the_password_and_secret_query_values(url, shown):
    assert mask_url(url) == shown
    assert SECRET not in mask_url(url)
    assert has_secret(url) == (url != shown)


@pytest.mark.parametrize("garbage", [None, "not a url", f"erin:{SECRET}@db/airlines", "://", "a b://c",
                                     f"postgresql://x\n{SECRET}", 12345, b"bytes://x", object()])
def test_mask_url_never_raises_and_never_echoes_garbage(garbage):
    shown = mask_url(garbage)
    assert isinstance(shown, str) and SECRET not in shown
    if garbage is None or (isinstance(garbage, str) and "://" not in garbage):
        assert shown == UNPARSABLE


def test_mask_url_takes_sqlalchemy_urls_rendered_with_their_password():
    url = sa.make_url(f"postgresql://erin:{SECRET}@db/airlines?password={SECRET}")
    assert mask_url(url.render_as_string(hide_password=False)) == "postgresql://erin:***@db/airlines?password=***"


def test_scrub_masks_urls_in_text_and_the_secrets_of_given_urls():
    url = f"postgresql://erin:{SECRET}@db/airlines?sslpassword={SECRET}x"
    text = f"connection to {url} failed: password {SECRET} rejected, key {SECRET}x"
    out = scrub(text, url)
    assert SECRET not in out and "postgresql://erin:***@db/airlines?sslpassword=***" in out


def test_display_helpers_use_mask_url():
    from mlflow_governance.acquisition.databases import display_url as acquisition_display
    from mlflow_governance.evidence.trace import display_url as trace_display

    url = f"postgresql://erin:{SECRET}@db/airlines?password={SECRET}"
    for show in (acquisition_display, trace_display):
        assert show(url) == "postgresql://erin:***@db/airlines?password=***"
        assert show(sa.make_url(url)) == "postgresql://erin:***@db/airlines?password=***"
        assert show("garbage") == UNPARSABLE


def test_cli_errors_mask_urls():
    from mlflow_governance.cli.common import one_line

    message, code = one_line(MlflowException(
        f"API request to http://admin:{SECRET}@127.0.0.1:9/api failed: Max retries exceeded (Connection refused)"))
    assert code == 6 and SECRET not in message and "http://admin:***@127.0.0.1:9" in message
    message, _ = one_line(MlflowException(f"cannot open postgresql://u@h/db?password={SECRET}"))
    assert SECRET not in message and "password=***" in message


def test_mlgov_acquire_errors_mask_the_url(tmp_path):
    from click.testing import CliRunner

    from mlflow_governance.cli.main import cli

    for url in (f"postgresql://erin:{SECRET}@127.0.0.1:9/airlines",
                f"postgresql://erin@127.0.0.1:9/airlines?password={SECRET}"):
        result = CliRunner().invoke(cli, ["acquire", "--flights-url", url, "--airports-url", url, "--months", "1"])
        assert result.exit_code == 2, result.output
        assert SECRET not in result.output and "***" in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


# --- the entry points' passwords ---------------------------------------------------------------


def test_with_password_sets_the_variable_into_the_url_in_memory():
    env = {"MLGOV_DB_PASSWORD_AIRPORTS": "p@ss/w:rd"}
    full = project_secrets.with_password("postgresql://erin@db:5432/airlines", "airports", env)
    assert sa.make_url(full).password == "p@ss/w:rd" and sa.make_url(full).username == "erin"
    assert project_secrets.with_password("postgresql://erin@db/airlines", "flights", env) == \
        "postgresql://erin@db/airlines"  # another URL's variable is not used
    assert project_secrets.with_password("", "airports", env) == ""
    for url, problem in (("postgresql://erin:0ld-pw@db/a", "has a password"), ("postgresql://db/a", "names no user"),
                         ("sqlite:///a.db", "SQLite"), ("nonsense", "not a SQLAlchemy URL")):
        with pytest.raises(ValueError, match=problem) as caught:
            project_secrets.with_password(url, "airports", env)
        assert "p@ss" not in str(caught.value) and "0ld-pw" not in str(caught.value)


def _recorded_run(tracking_uri: str, params: dict[str, str]) -> str:
    """A run with ``params`` recorded as `mlflow run` records them (mlflow/projects/utils.py)."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    client = MlflowClient(tracking_uri)
    run = client.create_run("0")
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    return run.info.run_id


@pytest.mark.parametrize("store", ["sqlite", "file"])
def test_a_secret_in_a_recorded_param_is_refused_and_erased(store, tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    if store == "sqlite":
        uri, where = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlflow.db"
    else:
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        uri, where = (tmp_path / "mlruns").as_uri(), tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = {"airports_url": f"postgresql://erin:{SECRET}A@127.0.0.1/db",
              "flights_url": f"postgresql://127.0.0.1/db?password={SECRET}B", "months": "1"}
    run_id = _recorded_run(uri, params)
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    with pytest.raises(SystemExit) as exited:
        project_secrets.refuse_secrets({k: params[k] for k in ("flights_url", "airports_url")}, entry="acquire")
    assert exited.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "Error" in x]  # (and MLflow's INFO lines)
    assert line.startswith("Error: -P ") and SECRET not in line and "MLGOV_DB_PASSWORD_AIRPORTS" in line
    assert f"erased from run {run_id}" in line
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FAILED" and run.info.lifecycle_stage == "active"  # `mlflow run` ends it
    assert run.data.params == {"airports_url": "postgresql://erin:***@127.0.0.1/db",
                               "flights_url": "postgresql://127.0.0.1/db?password=***", "months": "1"}
    assert [r.info.run_id for r in MlflowClient().search_runs(["0"], run_view_type=ViewType.ALL)] == [run_id]
    files = [where] if where.is_file() else [p for p in where.rglob("*") if p.is_file()]
    for path in files + [p for p in tmp_path.glob("mlflow.db*")]:
        assert SECRET.encode() not in path.read_bytes(), path


def test_a_store_that_cannot_erase_says_what_the_administrator_must_do(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    run_id = _recorded_run(uri, {"payload_url": f"postgresql://mona:{SECRET}@db/payloads"})
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    monkeypatch.setattr(project_secrets, "_purge_params", lambda store, run, keys: False)  # as a tracking server
    with pytest.raises(SystemExit):
        project_secrets.refuse_secrets({"payload_url": f"postgresql://mona:{SECRET}@db/payloads"}, entry="monitor")
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "Error" in x]
    assert f"mlflow gc --run-ids {run_id}" in line and "change the password" in line and SECRET not in line


def test_urls_without_secrets_pass(monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    project_secrets.refuse_secrets({"flights_url": "sqlite:///flights.db", "airports_url": "postgresql://erin@db/a",
                                    "payload_url": ""}, entry="pipeline")


def test_the_entry_points_refuse_before_anything_else(monkeypatch, tmp_path, capsys):
    """projects/monitor.py and projects/pipeline.py outside `mlflow run`: exit 2, one line."""
    import importlib.util

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    repo = Path(__file__).resolve().parents[1]
    for name, argv in (("monitor", ["--model", "m", "--payload-url", f"postgresql://mona:{SECRET}@db/p"]),
                       ("pipeline", ["--model", "m", f"--flights-url=sqlite:///f.db?token={SECRET}"])):
        spec = importlib.util.spec_from_file_location(f"entry_{name}", repo / "projects" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with pytest.raises(SystemExit) as exited:
            module.main(argv)
        assert exited.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert SECRET not in line and "MLGOV_DB_PASSWORD_" in line, line
    assert os.environ.get("MLFLOW_RUN_ID") is None
