"""``mlflow run . -e train`` for real (session fixture), then everything it left behind."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from mlflow_governance.core.features import CATEGORICAL_FEATURES, FEATURES, INTEGER_FEATURES, NUMERIC_FEATURES
from mlflow_governance.safe.model_files import allowed_types
from mlflow_governance.training import drift
from mlflow_governance.training.data import feature_frame
from mlflow_governance.training.search import METRICS, candidates

# The drift model's estimate of the primary model's accuracy on rows it never saw must be within
# this distance of the measured accuracy (5,000 hold-out rows: sampling error alone is ~0.004).
DRIFT_TOLERANCE = 0.03
# On a hard slice (fewer rows, near the delay threshold) the estimate may be a little looser.
DRIFT_SLICE_TOLERANCE = 0.05


def _fields(trained) -> dict[str, str]:
    status = GovernanceClient(trained.registry_uri).status(trained.model, trained.version)
    return status["version"]["fields"] | {"__stage__": status["version"]["stage"]}


def _download(uri: str, dst) -> str:
    return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))


def test_mlflow_run_registers_and_submits_the_version(trained_registry):
    fields = _fields(trained_registry)
    assert fields.pop("__stage__") == wf.MODEL_DEVELOPMENT_COMPLETED
    for name in wf.find_transition(wf.APPROVED_FOR_DEVELOPMENT, wf.SUBMIT, wf.VERSION_SCOPE).fields:
        assert fields.get(name, "").strip(), f"{name} not recorded on the version"
    assert fields["model_asset"] == trained_registry.model_uri
    assert fields["training_data_statistics"] == f"runs:/{trained_registry.run_id}/training_data_statistics.json"
    assert fields["experiment_file"] == f"runs:/{trained_registry.run_id}/leaderboard.csv"
    run = MlflowClient().get_run(trained_registry.run_id)
    assert fields["model_quality"] == f"roc_auc={run.data.metrics['test_roc_auc']:.4f}"
    assert run.data.params["quick"] == "true" and run.data.params["training_data"] == str(trained_registry.data_path)
    # the developer recorded by governance is the acting user of the mlflow run
    audit = GovernanceClient().audit(trained_registry.model)
    submit = [r for r in audit if r["action"] == "submit" and r["version"] == trained_registry.version]
    assert submit and submit[-1]["actor"] == "devi" and submit[-1]["outcome"] == "allowed"


def test_unlabeled_rows_are_dropped_counted_and_logged(trained_registry):
    data = pd.read_parquet(trained_registry.data_path)
    metrics = MlflowClient().get_run(trained_registry.run_id).data.metrics
    missing = int(data["DELAYED"].isna().sum())
    assert missing > 0  # the sample contains cancelled flights
    assert metrics["rows_total"] == len(data)
    assert metrics["rows_missing_label"] == missing
    assert metrics["rows_used"] == len(data) - missing
    assert metrics["rows_train"] + metrics["rows_validation"] + metrics["rows_test"] == len(data) - missing


def test_training_run_logs_the_same_dataset_digest_as_acquisition(trained_registry):
    """Lineage: the training run's input has the digest acquisition computes for the same file."""
    from mlflow_governance.acquisition.dataset import parquet_digest

    data = pd.read_parquet(trained_registry.data_path)
    nulls = {c: int(n) for c, n in data.isna().sum().items()}
    inputs = MlflowClient().get_run(trained_registry.run_id).inputs.dataset_inputs
    digests = {i.dataset.digest for i in inputs if any(t.value == "training" for t in i.tags)}
    assert digests == {parquet_digest(trained_registry.data_path, nulls)}


def test_registered_version_loads_with_pyfunc_and_scores_raw_rows(trained_registry, training_holdout, tmp_path):
    model = mlflow.pyfunc.load_model(trained_registry.model_uri)
    schema = model.metadata.get_input_schema()
    assert schema.input_names() == list(FEATURES)
    assert model.metadata.saved_input_example_info is not None
    # raw acquisition rows, extra columns (FLIGHT_ID, YEAR) and cancelled flights included
    raw = training_holdout.drop(columns=["DELAYED"])
    assert raw["DEPARTURE_DELAY"].isna().any()
    predictions = np.asarray(model.predict(raw))
    assert predictions.shape == (len(raw),) and set(np.unique(predictions)) <= {0, 1}
    labeled = training_holdout["DELAYED"].notna().to_numpy()
    truth = training_holdout.loc[labeled, "DELAYED"].astype(int).to_numpy()
    accuracy = float((predictions[labeled] == truth).mean())
    majority = max(truth.mean(), 1 - truth.mean())
    assert accuracy > majority + 0.05, (accuracy, majority)
    # saved with skops, never pickle; every trusted type declared is on the model-loading allowlist
    local = mlflow.artifacts.download_artifacts(trained_registry.model_uri, dst_path=str(tmp_path))
    flavor = yaml.safe_load(Path(local, "MLmodel").read_text())["flavors"]["sklearn"]
    assert flavor["serialization_format"] == "skops" and flavor["pickled_model"].endswith(".skops")
    for t in flavor["skops_trusted_types"] or []:
        assert t in allowed_types(), t


def test_leaderboard_has_one_row_per_candidate_and_each_candidate_a_nested_run(trained_registry, tmp_path):
    fields = _fields(trained_registry)
    board = pd.read_csv(_download(fields["experiment_file"], tmp_path))
    expected = candidates(quick=True)
    assert len(board) == len(expected) and sorted(board["candidate"]) == sorted(c.name for c in expected)
    assert board["family"].nunique() >= 3
    assert list(board["rank"]) == list(range(1, len(board) + 1))
    assert board["roc_auc"].is_monotonic_decreasing  # ranked by the default metric
    client = MlflowClient()
    children = client.search_runs(
        [trained_registry.experiment_id], f"tags.mlflow.parentRunId = '{trained_registry.run_id}'"
    )
    assert {r.info.run_id for r in children} == set(board["run_id"])
    for child in children:
        row = board[board["run_id"] == child.info.run_id].iloc[0]
        assert child.data.params["family"] == row["family"]
        for metric in METRICS:
            assert child.data.metrics[metric] == pytest.approx(row[metric])
    parent = client.get_run(trained_registry.run_id)
    assert parent.data.params["best_candidate"] == board.loc[0, "candidate"]


def test_training_data_statistics_match_the_training_data(trained_registry, tmp_path):
    fields = _fields(trained_registry)
    stats = json.loads(Path(_download(fields["training_data_statistics"], tmp_path)).read_text())
    data = pd.read_parquet(trained_registry.data_path)
    labeled = data[data["DELAYED"].notna()]
    X = feature_frame(labeled)
    assert stats["rows"]["total"] == len(data)
    assert stats["rows"]["missing_label_dropped"] == len(data) - len(labeled)
    assert stats["rows"]["used"] == len(labeled) == sum(stats["rows"]["splits"].values())
    counts = labeled["DELAYED"].astype(int).value_counts()
    assert stats["label_distribution"]["counts"] == {str(k): int(v) for k, v in counts.items()}
    for col in NUMERIC_FEATURES:
        s, values = stats["feature_statistics"][col], X[col].dropna()
        assert s["type"] == "numeric" and s["missing"] == int(X[col].isna().sum())
        assert s["mean"] == pytest.approx(values.mean()) and s["min"] == values.min() and s["max"] == values.max()
        assert s["quantiles"]["0.5"] == pytest.approx(values.median())
        assert sum(s["histogram"]["counts"]) == len(values)
    for col in CATEGORICAL_FEATURES:
        s = stats["feature_statistics"][col]
        assert s["type"] == "categorical"
        assert s["frequencies"] == {str(k): int(v) for k, v in X[col].value_counts().items()}
    sample = stats["reference_sample"]
    assert sample["artifact"] == "monitoring/reference.parquet"
    reference = pd.read_parquet(
        mlflow.artifacts.download_artifacts(f"runs:/{trained_registry.run_id}/{sample['artifact']}", dst_path=str(tmp_path))
    )
    assert sample["rows"] == len(reference) == min(10_000, len(labeled))
    assert stats["training_accuracy"]["measured_on"] == "test split"
    assert 0.5 < stats["training_accuracy"]["value"] <= 1
    for col in (*INTEGER_FEATURES, "DELAYED"):
        reference[col] = reference[col].astype("int64")
    rows = X.assign(DELAYED=labeled["DELAYED"].astype("int64")).drop_duplicates()
    found = reference.merge(rows, on=[*FEATURES, "DELAYED"], how="left", indicator=True)
    assert (found["_merge"] == "both").all(), "reference sample rows must come from the training data"


def test_drift_model_estimates_hold_out_accuracy(trained_registry, training_holdout, tmp_path):
    fields = _fields(trained_registry)
    primary = mlflow.sklearn.load_model(trained_registry.model_uri)
    detector = mlflow.pyfunc.load_model(fields["drift_detection_model"])
    assert detector.metadata.get_input_schema().input_names() == list(drift.DRIFT_INPUTS)
    labeled = training_holdout[training_holdout["DELAYED"].notna()]
    X, y = feature_frame(labeled), labeled["DELAYED"].astype(int).to_numpy()

    def estimate_and_measure(mask):
        p_correct = np.asarray(detector.predict(drift.drift_inputs(primary, X[mask])))[:, 1]
        return float(p_correct.mean()), float((primary.predict(X[mask]) == y[mask]).mean())

    everything = np.ones(len(X), dtype=bool)
    estimated, measured = estimate_and_measure(everything)
    assert abs(estimated - measured) <= DRIFT_TOLERANCE, (estimated, measured)
    # a hard slice: departures 0-30 minutes late, where the primary model errs more often; the drift
    # model sees the accuracy drop without labels
    hard = X["DEPARTURE_DELAY"].between(0, 30).to_numpy()
    est_hard, meas_hard = estimate_and_measure(hard)
    assert meas_hard < measured - 0.05
    assert est_hard < estimated - 0.05
    assert abs(est_hard - meas_hard) <= DRIFT_SLICE_TOLERANCE, (est_hard, meas_hard)
    # the drift model carries its own test-split calibration figures and metrics
    local = mlflow.artifacts.download_artifacts(fields["drift_detection_model"], dst_path=str(tmp_path))
    report = json.loads(Path(local, "calibration", "calibration.json").read_text())
    assert Path(local, "calibration", "calibration.png").stat().st_size > 0
    assert report["absolute_error"] == pytest.approx(abs(report["estimated_accuracy"] - report["measured_accuracy"]))
    assert report["rows"] == MlflowClient().get_run(trained_registry.run_id).data.metrics["rows_test"]
    # also reachable the MLflow 2 way, under the run's artifact path drift_detection_model
    by_run = mlflow.pyfunc.load_model(f"runs:/{trained_registry.run_id}/drift_detection_model")
    assert by_run.metadata.model_id == detector.metadata.model_id
    logged = MlflowClient().get_logged_model(fields["drift_detection_model"].split("/")[-1])
    assert {m.key for m in logged.metrics} >= {"estimated_accuracy", "measured_accuracy", "brier_score"}
