"""Training refuses bad input and wrong stages clearly, before anything is registered."""

from __future__ import annotations

import os

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core.errors import GovernanceError
from mlflow_governance.training.register import register_and_submit
from tests.conftest import acting, unique
from tests.plugins.training_fixtures import mlflow_run_train


def assert_nothing_written(model: str) -> None:
    assert MlflowClient().search_model_versions(f"name = '{model}'") == []
    assert mlflow.search_runs(search_all_experiments=True).empty


def test_refuses_unless_approved_for_development(sqlite_registry, training_parquet, training_cli):
    name = unique("delay")
    with acting("olivia"):
        GovernanceClient().initiate(name, use_case="flight delay prediction")
    result = training_cli("train", "--data", str(training_parquet), "--model", name, "--quick")
    assert result.exit_code == 3, result.output
    assert "'Candidacy Review'" in result.output and "Approved for Development" in result.output
    assert_nothing_written(name)


def test_refuses_an_ungoverned_or_unknown_model(sqlite_registry, training_parquet, training_cli):
    MlflowClient().create_registered_model("plain")
    result = training_cli("train", "--data", str(training_parquet), "--model", "plain", "--quick")
    assert result.exit_code == 3 and "not governed" in result.output, result.output
    result = training_cli("train", "--data", str(training_parquet), "--model", "nope", "--quick")
    assert result.exit_code == 4 and "nope" in result.output, result.output
    assert_nothing_written("plain")


def test_refuses_a_user_who_is_not_a_model_developer(approved_model, training_cli):
    result = training_cli("train", "--model", approved_model, "--quick", user="erin")
    assert result.exit_code == 3, result.output
    assert "ModelDeveloper role is required" in result.output and "ModelDataEngineer" in result.output
    assert_nothing_written(approved_model)


def test_refuses_without_an_acting_user(approved_model, training_cli):
    result = training_cli("train", "--model", approved_model, "--quick", user=None)
    assert result.exit_code == 3 and "MLGOV_USER" in result.output, result.output
    assert_nothing_written(approved_model)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, df: None, "does not exist"),
        (lambda p, df: p.write_text("FLIGHT_ID,DELAYED\n1,0\n"), "not a readable Parquet file"),
        (lambda p, df: df.drop(columns=["DISTANCE", "CARRIER"]).to_parquet(p), "lacks column(s) DISTANCE, CARRIER"),
        (lambda p, df: df.assign(DELAYED=df["DELAYED"].fillna(0) * 2).to_parquet(p), "DELAYED must be 0, 1 or missing"),
        (lambda p, df: df.assign(DELAYED=0).to_parquet(p), "only one DELAYED class"),
        (lambda p, df: df.head(50).to_parquet(p), "at least 100 are needed"),
        (lambda p, df: df.assign(MONTH=df["MONTH"] + 0.5).to_parquet(p), "MONTH must be a whole number"),
    ],
    ids=["missing-file", "not-parquet", "missing-columns", "bad-label", "one-class", "too-few-rows", "bad-month"],
)
def test_refuses_bad_training_data(approved_model, training_parquet, tmp_path, training_cli, make, message):
    bad = tmp_path / "bad.parquet"
    make(bad, pd.read_parquet(training_parquet))
    result = training_cli("train", "--data", str(bad), "--model", approved_model, "--quick")
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.startswith("Error: ")
    assert_nothing_written(approved_model)


def test_refuses_an_unknown_metric(approved_model, training_parquet, training_cli):
    result = training_cli("train", "--data", str(training_parquet), "--model", approved_model, "--metric", "speed")
    assert result.exit_code == 2 and "speed" in result.output
    assert_nothing_written(approved_model)


def test_a_refused_submission_leaves_no_registered_version(approved_model, tmp_path):
    """If governance refuses the submission, the version just registered is deleted again."""
    from sklearn.dummy import DummyClassifier

    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    mlflow.set_experiment("refused-submission")
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(DummyClassifier().fit(X, [0, 1, 0, 1]), name="model")
    fields = {
        "development_system": "test",
        "training_data_statistics": "runs:/x/s.json",
        "drift_detection_model": "models:/m-x",
        "model_quality": "not a metric",
        "experiment_file": "runs:/x/l.csv",
    }
    with acting("devi"), pytest.raises(GovernanceError, match="model_quality"):
        register_and_submit(GovernanceClient(), approved_model, info, run.info.run_id, fields, "test")
    assert MlflowClient().search_model_versions(f"name = '{approved_model}'") == []


def test_mlflow_run_refuses_a_model_not_approved_for_development(sqlite_registry, training_parquet, tmp_path):
    """The MLproject entry point itself: a clear error, a non-zero exit, no version."""
    name = unique("delay")
    with acting("olivia"):
        GovernanceClient().initiate(name, use_case="flight delay prediction")
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")} | {"MLGOV_USER": "devi"}
    done = mlflow_run_train(env, tmp_path, name, data=str(training_parquet))
    assert done.returncode != 0
    assert f"model {name!r} is in stage 'Candidacy Review'" in done.stderr, done.stderr[-3000:]
    assert MlflowClient().search_model_versions(f"name = '{name}'") == []
