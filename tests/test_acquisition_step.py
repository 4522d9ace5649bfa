"""The acquisition step for real: ``mlflow run <repo> -e acquire``, ``mlgov acquire`` and ``mlgov sources seed``.

Each run logs to a private governed SQLite registry; the databases are the session's seeded
PostgreSQL and SQLite pair (or files seeded by the test itself). Expected values come from pandas.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_governance.cli.acquisition import register
from mlflow_governance.cli.common import GovernanceGroup
from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from tests.conftest import acting, unique
from tests.plugins.acquisition_fixtures import expected_training_set

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@click.group(cls=GovernanceGroup)
def mlgov() -> None:
    """The acquisition commands on a group of their own (as cli/main.py registers them)."""


register(mlgov)


def run_cli(*args: str, user: str | None = None):
    with acting(user):
        return CliRunner().invoke(mlgov, list(args), catch_exceptions=False)


def model_in_data_acquisition(name: str) -> GovernanceClient:
    client = GovernanceClient()
    with acting("olivia"):
        client.initiate(name, use_case="delay prediction")
    with acting("adam"):
        client.transition(name, "approve")
    return client


def mlflow_run(*params: str, user: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLGOV_USER=user, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    args = [str(VENV_BIN / "mlflow"), "run", str(REPO), "-e", "acquire", "--env-manager", "local"]
    for p in params:
        args += ["-P", p]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def only_run() -> mlflow.entities.Run:
    runs = MlflowClient().search_runs(experiment_ids=["0"])
    assert len(runs) == 1
    return runs[0]


def test_mlflow_run_acquires_profiles_catalogues_and_records(sqlite_registry, acquisition_sources, tmp_path):
    name = unique("delay")
    client = model_in_data_acquisition(name)
    out = tmp_path / "data" / "training.parquet"
    proc = mlflow_run(
        f"flights_url={acquisition_sources.sqlite_url}", f"airports_url={acquisition_sources.pg_url}",
        "months=1,2,3", f"output={out}", f"model={name}", user="erin",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    # The joined training set: the pandas join of the package data, FLIGHT_ID once.
    expected = expected_training_set([1, 2, 3])
    got = pd.read_parquet(out)
    assert len(got) == len(expected) and got["FLIGHT_ID"].tolist() == expected["FLIGHT_ID"].tolist()
    assert list(got.columns) == list(expected.columns) and list(got.columns).count("FLIGHT_ID") == 1

    run = only_run()
    assert run.info.status == "FINISHED"
    assert run.data.params["flights_reader"] == "adbc-sqlite"
    assert run.data.params["airports_reader"] == "adbc-postgresql"
    assert run.data.metrics["flight_rows"] == run.data.metrics["airport_rows"] == len(expected)
    assert run.data.metrics["joined_rows"] == len(expected)
    assert run.data.metrics["unmatched_flight_keys"] == run.data.metrics["unmatched_airport_keys"] == 0

    # The dataset input: MLflow's own digest of the Parquet, its source the logged artifact.
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.digest == mlflow.data.from_pandas(got).digest
    assert inp.dataset.source_type == "local"
    assert json.loads(inp.dataset.source)["uri"].endswith(f"{run.info.run_id}/artifacts/data/training.parquet")
    assert json.loads(inp.dataset.profile)["num_rows"] == len(expected)
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"

    # The profile artifacts.
    art = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="profile", dst_path=tmp_path / "a"))
    profile = json.loads((art / "profile.json").read_text())
    balance = expected["DELAYED"].value_counts()
    assert profile["rows"] == len(expected)
    assert profile["label"]["counts"] == {"0": balance[0], "1": balance[1]}
    assert profile["columns"]["DEPARTURE_DELAY"]["nulls"] == expected["DEPARTURE_DELAY"].isna().sum()
    assert profile["quality"]["flag"] == "acceptable"
    page = (art / "profile.html").read_text()
    assert "Training data profile: acceptable" in page and "href='profile_evidently.html'" in page
    assert (art / "profile.html").stat().st_size < 1_000_000
    full = (art / "profile_evidently.html").read_text()  # evidently's page with its script bundle
    assert "DEPARTURE_DELAY" in full and "<script" in full and len(full) > 1_000_000
    summary = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="acquisition/summary.json", dst_path=tmp_path / "b")).read_text())
    assert summary["profile_html"]["renderer"] == "evidently"
    assert summary["readers"] == {"flights": "adbc-sqlite", "airports": "adbc-postgresql"}

    # The governance record, made by erin as ModelDataEngineer; the asset is the logged Parquet.
    status = client.status(name)
    asset = f"runs:/{run.info.run_id}/data/training.parquet"
    assert status["stage"] == wf.DATA_ACQUISITION_COMPLETED and status["entered_by"] == "erin"
    assert status["fields"]["training_data_asset"] == asset
    assert status["fields"]["training_data_quality_flag"] == "acceptable"
    assert Path(mlflow.artifacts.download_artifacts(asset, dst_path=tmp_path / "c")).read_bytes() == out.read_bytes()
    with acting("olivia"):
        assert client.transition(name, "approve")["stage"] == wf.APPROVED_FOR_DEVELOPMENT


def test_mlflow_run_with_bad_input_fails_and_writes_nothing(sqlite_registry, acquisition_sources, tmp_path):
    name = unique("delay")
    client = model_in_data_acquisition(name)
    out = tmp_path / "training.parquet"
    proc = mlflow_run(
        f"flights_url={acquisition_sources.pg_url}", f"airports_url={acquisition_sources.sqlite_url}",
        "months=1", "flights_table=NOPE_{MONTH}", f"output={out}", f"model={name}", user="erin",
    )
    assert proc.returncode != 0
    assert "Error: the flights database postgresql://" in proc.stderr and "has no table NOPE_JANUARY" in proc.stderr
    assert "Traceback" not in proc.stderr.split("Error:")[-1]
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "mlflow.db"]
    assert only_run().info.status == "FAILED"
    assert client.status(name)["stage"] == wf.DATA_ACQUISITION


def test_mlgov_seed_and_acquire_on_the_embedded_default(sqlite_registry, tmp_path):
    r = run_cli("sources", "seed", "--months", "1")
    assert r.exit_code == 0, r.output
    jan = expected_training_set([1])
    assert f"flights: {len(jan):,} rows in 1 table(s) of sqlite:///{tmp_path / 'flights.db'} via adbc-sqlite" in r.output
    assert (tmp_path / "airports.db").is_file()
    r = run_cli("acquire", "--months", "1", "--output", "jan.parquet", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["rows"] == len(jan) and summary["output"] == str(tmp_path / "jan.parquet")
    assert summary["dataset"]["digest"] == mlflow.data.from_pandas(pd.read_parquet(tmp_path / "jan.parquet")).digest
    assert "governance" not in summary
    assert only_run().data.tags["training_data_quality_flag"] == summary["training_data_quality_flag"] == "acceptable"


def test_mlgov_acquire_records_a_not_acceptable_verdict(sqlite_registry, acquisition_sources):
    name = unique("delay")
    client = model_in_data_acquisition(name)
    r = run_cli("acquire", "--flights-url", acquisition_sources.pg_url, "--airports-url", acquisition_sources.sqlite_url,
                "--months", "2", "--model", name, "--reader", "sqlalchemy", "--json", user="erin")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["output"] is None  # kept only as the run's artifact
    assert summary["readers"] == {"flights": "sqlalchemy-postgresql", "airports": "sqlalchemy-sqlite"}
    assert summary["training_data_quality_flag"] == "not acceptable"
    assert summary["reasons"][0].startswith("label_missing")
    status = client.status(name)
    assert status["fields"]["training_data_quality_flag"] == "not acceptable"
    assert status["fields"]["training_data_asset"] == summary["training_data_asset"]
    # The owner cannot approve development on data the rules found not acceptable; she sends it back.
    with acting("olivia"), pytest.raises(MlflowException, match="training_data_quality_flag"):
        client.transition(name, "approve")
    with acting("olivia"):
        client.transition(name, "reject", comment="February misses too many labels: take more months")
    assert client.status(name)["stage"] == wf.DATA_ACQUISITION


def test_governance_refuses_before_any_work(sqlite_registry, acquisition_sources):
    urls = ("--flights-url", acquisition_sources.sqlite_url, "--airports-url", acquisition_sources.pg_url, "--months", "1")
    name = unique("delay")
    with acting("olivia"):
        GovernanceClient().initiate(name, use_case="delay prediction")
    r = run_cli("acquire", *urls, "--model", name, user="erin")
    assert r.exit_code == 3 and "is in stage 'Candidacy Review'" in r.output
    with acting("adam"):
        GovernanceClient().transition(name, "approve")
    r = run_cli("acquire", *urls, "--model", name, user="devi")
    assert r.exit_code == 3 and "ModelDataEngineer role is required" in r.output
    r = run_cli("acquire", *urls, "--model", name)
    assert r.exit_code == 3 and "MLGOV_USER" in r.output
    assert MlflowClient().search_runs(experiment_ids=["0"]) == []


def test_cli_bad_input_is_a_message(sqlite_registry, acquisition_sources):
    urls = ("--flights-url", acquisition_sources.sqlite_url, "--airports-url", acquisition_sources.pg_url)
    r = run_cli("acquire", *urls, "--months", "13")
    assert r.exit_code == 2 and "months must be a comma-separated list of 1..12" in r.output
    r = run_cli("acquire", *urls, "--months", "1", "--flights-table", "JANUARY_FLIGHT_INFORMATION;DROP")
    assert r.exit_code == 2 and "Error: flights table 'JANUARY_FLIGHT_INFORMATION;DROP' is not a plain identifier" in r.output
    r = run_cli("acquire", *urls, "--months", "1", "--flight-columns", "FLIGHT_ID,DELAYED,NOPE",
                "--experiment", "never-created")
    assert r.exit_code == 2 and "has no column NOPE" in r.output
    # Refused before MLflow was touched: no experiment, no failed run.
    from mlflow import MlflowClient

    assert MlflowClient().get_experiment_by_name("never-created") is None
    assert MlflowClient().search_runs(["0"]) == []
    r = run_cli("sources", "seed", "--flights-url", "nonsense://", "--months", "1")
    assert r.exit_code == 2 and "Error: cannot use the flights database" in r.output
