"""``training_cli import-model``: an outside scikit-learn model enters the same workflow, or is refused.

Only skops files import; pickle/joblib files are refused unopened (the attacks behind that rule
are in tests/test_model_files.py).
"""

from __future__ import annotations

import functools
import json
import os
import pickle
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from mlflow import MlflowClient
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from mlflow_governance.training.data import feature_frame, label_rows
from mlflow_governance.training.pipeline import build_pipeline
from tests.test_training_refusals import assert_nothing_written


def outside_model(parquet: Path):
    """A model 'developed elsewhere': a plain logistic regression pipeline on the raw columns."""
    data = label_rows(pd.read_parquet(parquet))
    return build_pipeline("logistic_regression", {"C": 0.5}, seed=3).fit(data.X, data.y)


def test_import_registers_and_submits_an_outside_model(
    approved_model, training_parquet, training_holdout, tmp_path, training_cli
):
    estimator = outside_model(training_parquet)
    path = tmp_path / "outside.skops"
    sio.dump(estimator, path)
    # no --data: the training data comes from the model's training_data_asset
    result = training_cli(
        "import-model",
        "--model-file",
        str(path),
        "--model",
        approved_model,
        "--development-system",
        "Heroku notebook",
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    version = summary["version"]
    status = GovernanceClient().status(approved_model, version)["version"]
    assert status["stage"] == wf.MODEL_DEVELOPMENT_COMPLETED
    fields = status["fields"]
    assert fields["development_system"].startswith("Heroku notebook")
    assert fields["model_quality"].startswith("roc_auc=")
    # the governed version scores raw rows exactly as the outside model does
    served = mlflow.pyfunc.load_model(f"models:/{approved_model}/{version}")
    raw = training_holdout.drop(columns=["DELAYED"])
    np.testing.assert_array_equal(np.asarray(served.predict(raw)), estimator.predict(feature_frame(raw)))
    # the same monitoring artifacts as a trained model: statistics, drift model, a one-row leaderboard
    board = pd.read_csv(mlflow.artifacts.download_artifacts(fields["experiment_file"], dst_path=str(tmp_path)))
    assert len(board) == 1 and board.loc[0, "family"] == "imported"
    stats = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(fields["training_data_statistics"], dst_path=str(tmp_path))
        ).read_text()
    )
    assert stats["rows"]["total"] == len(pd.read_parquet(training_parquet))
    drift_model = mlflow.pyfunc.load_model(fields["drift_detection_model"])
    assert "PRIMARY_PROBABILITY" in drift_model.metadata.get_input_schema().input_names()
    run = MlflowClient().get_run(summary["run_id"])
    assert run.data.params["imported_file"] == path.name
    assert run.data.params["training_data"] == training_parquet.as_uri()


def _write(kind: str, path: Path) -> Path:
    if kind == "pickle":
        # a perfectly good model, but pickled: refused without being opened
        path.write_bytes(pickle.dumps(LogisticRegression().fit(pd.DataFrame({"DISTANCE": [1.0, 2.0]}), [0, 1])))
    elif kind == "joblib":
        joblib.dump(LogisticRegression(), path)
    elif kind == "dict":
        sio.dump({"coef": [1, 2, 3]}, path)
    elif kind == "unfitted":
        sio.dump(LogisticRegression(), path)
    elif kind == "regressor":
        X = pd.DataFrame({"DISTANCE": [1.0, 2.0, 3.0]})
        sio.dump(RandomForestRegressor(n_estimators=2).fit(X, [1.0, 2.0, 3.0]), path)
    elif kind == "untrusted-skops":
        sio.dump(Pipeline([("f", FunctionTransformer(os.system)), ("clf", LogisticRegression())]), path)
    elif kind == "numpy-function-skops":
        # Only allowlisted types load: a NumPy *function* bound into the pipeline would run when
        # the model scores (here: write a file).
        writer = functools.partial(np.savetxt, str(path.parent / "written-by-the-model.txt"))
        sio.dump(Pipeline([("f", FunctionTransformer(writer)), ("clf", LogisticRegression())]), path)
    elif kind == "bad-skops":
        path.write_text("not a zip")
    elif kind == "wrong-columns":
        X = pd.DataFrame({"WIND_SPEED": [1.0, 2.0, 3.0, 4.0]})
        sio.dump(LogisticRegression().fit(X, [0, 1, 0, 1]), path)
    else:
        path.write_text("x")
    return path


@pytest.mark.parametrize(
    "kind, name, message",
    [
        ("pickle", "m.pkl", 'skops.io.dump(joblib.load("m.pkl"), "m.skops")'),
        ("pickle", "m.pickle", "pickle and joblib files are refused"),
        ("joblib", "m.joblib", 'skops.io.dump(joblib.load("m.joblib"), "m.skops")'),
        ("dict", "m.skops", "does not load as a scikit-learn estimator: it holds a builtins.dict"),
        ("unfitted", "m.skops", "unfitted LogisticRegression"),
        ("regressor", "m.skops", "not a classifier"),
        ("untrusted-skops", "m.skops", f"not trusted for loading: {os.system.__module__}.system"),
        ("numpy-function-skops", "m.skops", "not trusted for loading: numpy.savetxt"),
        ("bad-skops", "m.skops", "not a readable skops file"),
        ("wrong-columns", "m.skops", "does not score the raw feature columns"),
        ("other", "m.txt", "unsupported model file type '.txt'"),
    ],
)
def test_import_refuses_what_is_not_a_usable_sklearn_model(
    approved_model, training_parquet, tmp_path, training_cli, kind, name, message
):
    path = _write(kind, tmp_path / name)
    result = training_cli(
        "import-model", "--model-file", str(path), "--data", str(training_parquet), "--model", approved_model
    )
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert not (tmp_path / "written-by-the-model.txt").exists()
    assert_nothing_written(approved_model)


def test_import_refuses_unless_approved_for_development(sqlite_registry, training_parquet, tmp_path, training_cli):
    from tests.conftest import acting, unique

    name = unique("delay")
    with acting("olivia"):
        GovernanceClient().initiate(name, use_case="flight delay prediction")
    path = tmp_path / "m.skops"
    sio.dump(outside_model(training_parquet), path)
    result = training_cli("import-model", "--model-file", str(path), "--data", str(training_parquet), "--model", name)
    assert result.exit_code == 3 and "Approved for Development" in result.output, result.output
    assert_nothing_written(name)


def test_training_reads_a_training_set_that_acquisition_logged_as_a_run_artifact(sqlite_registry, training_parquet,
                                                                                 training_cli):
    """training_data_asset as acquisition records it without --output: runs:/RUN/data/training.parquet."""
    import mlflow

    from tests.conftest import unique
    from tests.plugins.training_fixtures import approve_for_development

    with mlflow.start_run() as run:
        mlflow.log_artifact(str(training_parquet), "data")
    asset = f"runs:/{run.info.run_id}/data/{training_parquet.name}"
    name = unique("from-run")
    approve_for_development(sqlite_registry, name, asset)
    result = training_cli("train", "--model", name, "--quick", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    dev_run = mlflow.get_run(summary["run_id"])
    (training_input,) = [i for i in dev_run.inputs.dataset_inputs if i.tags[0].value == "training"]
    assert training_input.dataset.source_type == "local" and training_parquet.name in training_input.dataset.source
