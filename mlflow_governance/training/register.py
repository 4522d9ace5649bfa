"""Log the developed model and its monitoring artifacts, register a version and submit it.

Shared by `develop.train` (the model search) and `importer.import_model` (an outside model):
both end in `publish`, which logs the leaderboard, the test metrics, the training data
statistics, the drift detection model and the model itself, registers a new version and
submits it to Model Development Completed as the acting ModelDeveloper. If registration or the
submission fails, the new version is deleted again, so a failure leaves no half-made version.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator

from mlflow_governance.core import workflow
from mlflow_governance.core.features import LABEL
from mlflow_governance.training import drift
from mlflow_governance.training.data import LabeledData, Split
from mlflow_governance.training.pipeline import trusted_types
from mlflow_governance.training.search import evaluate
from mlflow_governance.training.statistics import REFERENCE_ARTIFACT, reference_sample, training_data_statistics

MODEL_NAME = "model"
DRIFT_MODEL_NAME = "drift_detection_model"
LEADERBOARD = "leaderboard.csv"
STATISTICS = "training_data_statistics.json"
EXAMPLE_ROWS = 5


@dataclass
class DevelopmentResult:
    """What a development run produced: the submitted version and where its record lives."""

    model: str
    version: int
    run_id: str
    model_uri: str
    fields: dict[str, str]
    test_metrics: dict[str, float]
    drift_calibration: dict[str, Any] = field(repr=False, default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "run_id": self.run_id,
            "stage": workflow.MODEL_DEVELOPMENT_COMPLETED,
            "fields": self.fields,
            "test_metrics": self.test_metrics,
        }


def require_development_allowed(client, model: str) -> dict[str, Any]:
    """The model's status, if the acting user may submit a new version of it for development.

    Checked before any data is read or anything is logged, with the workflow's own `may`
    (the check the submission itself makes), locally and against a governance server alike.
    """
    client.require(model, workflow.SUBMIT, new_version=True)
    return client.status(model)


def training_data_uri(data: str | None, status: dict[str, Any]) -> str:
    """``data`` if given, else the model's ``training_data_asset`` field."""
    uri = (data or "").strip() or str(status.get("fields", {}).get("training_data_asset", "")).strip()
    if not uri:
        raise ValueError(
            f"no training data: pass --data PATH, or have the {workflow.MODEL_DATA_ENGINEER} record training_data_asset "
            f"on {status.get('model')!r}"
        )
    return uri


@contextmanager
def development_run(model: str, experiment: str | None, run_name: str) -> Iterator[Any]:
    """The MLflow run to record into.

    The active run, or the one ``mlflow run`` started (``MLFLOW_RUN_ID``); otherwise a new run in
    ``experiment``, else ``MLFLOW_EXPERIMENT_NAME``, else ``<model>-development``.
    """
    import mlflow

    active = mlflow.active_run()
    if active is not None:
        yield active
        return
    if os.environ.get("MLFLOW_RUN_ID"):
        with mlflow.start_run() as run:
            yield run
        return
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"{model}-development"
    experiment_id = mlflow.set_experiment(name).experiment_id
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        yield run


def log_data(data: LabeledData, split: Split, source: str) -> None:
    """Log the row counts (incl. unlabeled rows dropped) and the data as the run's input (lineage)."""
    import mlflow

    mlflow.log_metrics(
        {
            "rows_total": data.rows_total,
            "rows_missing_label": data.rows_missing_label,
            "rows_used": len(data.frame),
            **{f"rows_{k}": v for k, v in split.sizes().items()},
        }
    )
    frame = data.source if data.source is not None else data.X.assign(**{LABEL: data.y})
    if source.startswith("runs:/"):
        # MLflow's dataset sources cannot resolve runs:/ URIs: name the artifact's real location.
        from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

        source = RunsArtifactRepository.get_underlying_uri(source)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        dataset = mlflow.data.from_pandas(frame, source=source, name=Path(source).name or "training", targets=LABEL)
        mlflow.log_input(dataset, context="training")


def log_sklearn_model(
    model: BaseEstimator,
    name: str,
    X: pd.DataFrame,
    pyfunc_predict_fn: str = "predict",
    metadata: dict[str, Any] | None = None,
):
    """Log ``model`` with mlflow.sklearn in skops format, its trusted types declared, with signature + example."""
    import mlflow
    from mlflow.models import infer_signature

    output = getattr(model, pyfunc_predict_fn)(X)
    with warnings.catch_warnings():
        # The calendar columns are integers by design (never missing): MLflow's hint does not apply.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        signature = infer_signature(X, output)
    return mlflow.sklearn.log_model(
        model,
        name=name,
        signature=signature,
        input_example=X.head(EXAMPLE_ROWS),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=trusted_types(model),
        pyfunc_predict_fn=pyfunc_predict_fn,
        # declared, not inferred: inference re-loads the model in a subprocess (seconds per model)
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        metadata=metadata,
    )


def log_drift_model(primary: BaseEstimator, split: Split) -> tuple[str, dict[str, Any]]:
    """Train, calibrate and log the drift detection model; returns (model URI, calibration report)."""
    import mlflow

    detector = drift.fit_drift_model(primary, split.X_val, split.y_val, split.seed)
    report = drift.calibration_report(primary, detector, split.X_test, split.y_test)
    info = log_sklearn_model(
        detector,
        DRIFT_MODEL_NAME,
        drift.drift_inputs(primary, split.X_val),
        pyfunc_predict_fn="predict_proba",
        metadata={
            "predicts": "probability that the primary model's prediction is correct (column 1)",
            "primary_probability_column": drift.PROBABILITY_COLUMN,
            "trained_on": "validation split",
            "calibrated_on": "test split",
        },
    )
    metrics = {
        k: report[k]
        for k in (
            "estimated_accuracy",
            "measured_accuracy",
            "absolute_error",
            "brier_score",
            "roc_auc",
            "expected_calibration_error",
        )
        if report[k] is not None
    }
    mlflow.log_metrics(metrics, model_id=info.model_id)
    mlflow.log_metrics({f"drift_{k}": v for k, v in metrics.items()})
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "calibration.json").write_text(json.dumps(report, indent=2))
        drift.calibration_figure(report).savefig(Path(tmp) / "calibration.png", dpi=100)
        mlflow.MlflowClient().log_model_artifacts(info.model_id, tmp, "calibration")
    return info.model_uri, report


def register_and_submit(client, model: str, model_info, run_id: str, fields: dict[str, str], description: str) -> int:
    """Register a new version of ``model`` and submit it; deletes the version again if that fails."""
    from mlflow import MlflowClient

    registry = MlflowClient(registry_uri=client.registry_uri)
    mv = registry.create_model_version(
        model, model_info.model_uri, run_id=run_id, description=description, model_id=model_info.model_id
    )
    version = int(mv.version)
    try:
        client.transition(
            model, "submit", version=version, fields={"model_asset": f"models:/{model}/{version}", **fields}
        )
    except BaseException:
        with suppress(Exception):  # the submission's own error is the one to report
            registry.delete_model_version(model, str(version))
        raise
    return version


def publish(
    client,
    model: str,
    run,
    primary: BaseEstimator,
    data: LabeledData,
    split: Split,
    leaderboard: pd.DataFrame,
    metric: str,
    development_system: str,
    source: str,
) -> DevelopmentResult:
    """Log everything validation and monitoring need, register the model and submit the version."""
    import mlflow
    import sklearn

    run_id = run.info.run_id
    mlflow.log_text(leaderboard.to_csv(index=False), LEADERBOARD)
    test_metrics = evaluate(primary, split.X_test, split.y_test)
    mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items()})
    stats = training_data_statistics(data, split.sizes(), seed=split.seed, source=source)
    # What the monitors compare with: the training-time accuracy and the reference sample.
    stats["training_accuracy"] = {"value": test_metrics["accuracy"], "measured_on": "test split"}
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / Path(REFERENCE_ARTIFACT).name
        reference_sample(data, seed=split.seed).to_parquet(sample, index=False)
        mlflow.log_artifact(str(sample), str(Path(REFERENCE_ARTIFACT).parent))
    mlflow.log_dict(stats, STATISTICS)
    drift_uri, report = log_drift_model(primary, split)
    info = log_sklearn_model(
        primary,
        MODEL_NAME,
        split.X_train,
        metadata={"label": LABEL, "selection_metric": metric, "scikit_learn": sklearn.__version__},
    )
    mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items()}, model_id=info.model_id)
    quality = f"{metric}={test_metrics[metric]:.4f}"
    fields = {
        "development_system": f"{development_system} (MLflow {mlflow.__version__}, scikit-learn "
        f"{sklearn.__version__}, Python {platform.python_version()}; run {run_id})",
        "training_data_statistics": f"runs:/{run_id}/{STATISTICS}",
        "drift_detection_model": drift_uri,
        "model_quality": quality,
        "experiment_file": f"runs:/{run_id}/{LEADERBOARD}",
    }
    description = (
        f"{leaderboard.iloc[0]['candidate']} selected by validation {metric} out of {len(leaderboard)} "
        f"candidate(s); test {quality}; drift model estimates test accuracy {report['estimated_accuracy']:.4f} "
        f"(measured {report['measured_accuracy']:.4f})."
    )
    version = register_and_submit(client, model, info, run_id, fields, description)
    mlflow.set_tags({"governed_model": model, "governed_version": str(version)})
    return DevelopmentResult(
        model=model,
        version=version,
        run_id=run_id,
        model_uri=f"models:/{model}/{version}",
        fields={"model_asset": f"models:/{model}/{version}", **fields},
        test_metrics=test_metrics,
        drift_calibration=report,
    )
