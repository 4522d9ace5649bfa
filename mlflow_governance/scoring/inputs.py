"""What a validation reads: the validation data, and the version with what development recorded.

The version is loaded from the registry (``models:/NAME/N``, never from the development run),
with the project's skops allowlist (`model_files.load_mlflow_sklearn`). Its reference comes from
what development recorded on it: the ``training_data_statistics`` field names the statistics
document, which names the reference sample beside it and the training-time accuracy; the
``drift_detection_model`` field names the drift detection model. An imported outside model gets
all of that the same way, from `training.register.publish`.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlflow_governance.core.features import FEATURES, LABEL
from mlflow_governance.monitoring.base import Reference, Window
from mlflow_governance.safe.model_files import load_mlflow_sklearn
from mlflow_governance.scoring.decision import score
from mlflow_governance.training.data import feature_frame, local_path, read_parquet


@dataclass(frozen=True)
class ValidationData:
    """The rows to validate on: features, labels (NaN where unknown) and where they came from."""

    uri: str
    frame: pd.DataFrame
    features: pd.DataFrame
    labels: np.ndarray


@dataclass(frozen=True)
class VersionUnderTest:
    """The registered version, its reference and the development records they came from."""

    model: str
    version: int
    primary: Any
    reference: Reference
    statistics: dict[str, Any]
    fields: dict[str, str]

    def score(self, data: ValidationData) -> Window:
        """The version's predictions on ``data`` as a monitor window (`scoring.score`)."""
        prediction, probability = score(self.primary, data.features)
        return Window(data.features, prediction, probability, data.labels)


def read_validation_data(uri: str) -> ValidationData:
    """The Parquet at ``uri`` (a path, ``file://`` or any URI MLflow downloads); ValueError naming
    the problem for a missing file, a file that is not Parquet, or one without the model's columns."""
    text = str(uri or "").strip()
    if not text:
        raise ValueError("no validation data: pass --data PATH_OR_URI (for example a month acquired with mlgov acquire)")
    with tempfile.TemporaryDirectory(prefix="mlgov-validation-data-") as tmp:
        try:
            path = local_path(text, tmp)
        except ValueError as exc:
            raise ValueError(str(exc).replace("training data", "validation data")) from None
        frame = read_parquet(path, FEATURES, what="validation data", shown=text, columns="the model's column(s)",
                             expected="the model takes")
    if frame.empty:
        raise ValueError(f"validation data {text!r} has no rows")
    features = feature_frame(frame)
    if LABEL in frame.columns:
        labels = pd.to_numeric(frame[LABEL], errors="coerce").to_numpy(dtype="float64")
        bad = ~np.isnan(labels) & ~np.isin(labels, (0.0, 1.0))
        if bad.any():
            raise ValueError(f"validation data {text!r}: {LABEL} must be 0, 1 or missing in every row")
    else:
        labels = np.full(len(frame), np.nan)
    return ValidationData(text, frame, features, labels)


def _download_json(uri: str, tmp: str) -> dict[str, Any]:
    import mlflow

    try:
        return json.loads(Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)).read_text())
    except Exception as exc:  # noqa: BLE001 - a missing or unreadable artifact is the version's problem
        raise ValueError(f"cannot read {uri}: {getattr(exc, 'message', None) or exc}") from exc


def read_reference(model: str, version: int, fields: dict[str, str], tmp: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """(the training data statistics document, the reference sample as logged) development recorded
    on ``version`` of ``model``, downloaded into ``tmp``; ValueError saying what is missing."""
    import mlflow

    stats_uri = (fields.get("training_data_statistics") or "").strip()
    if not stats_uri:
        raise ValueError(f"version {version} of {model!r} has no training_data_statistics: development did not "
                         "record the reference the monitors compare with")
    stats = _download_json(stats_uri, tmp)
    sample = stats.get("reference_sample") or {}
    accuracy = (stats.get("training_accuracy") or {}).get("value")
    if not sample.get("artifact") or accuracy is None or "/" not in stats_uri:
        raise ValueError(
            f"version {version} of {model!r}: its training_data_statistics ({stats_uri}) records no reference "
            "sample or training accuracy (developed before monitoring existed): develop it again"
        )
    reference_uri = stats_uri.rsplit("/", 1)[0] + "/" + sample["artifact"]
    try:
        reference_path = mlflow.artifacts.download_artifacts(artifact_uri=reference_uri, dst_path=tmp)
        reference_frame = pd.read_parquet(reference_path)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read the reference sample {reference_uri}: {exc}") from exc
    return stats, reference_frame


def load_version(model: str, version: int, fields: dict[str, str]) -> VersionUnderTest:
    """The version ``models:/model/version`` and the reference development recorded on it."""
    drift_uri = (fields.get("drift_detection_model") or "").strip()
    if not (fields.get("training_data_statistics") or "").strip():
        read_reference(model, version, fields, "")  # raises: nothing recorded
    with tempfile.TemporaryDirectory(prefix="mlgov-validation-") as tmp:
        primary, _ = load_mlflow_sklearn(f"models:/{model}/{version}", Path(tmp) / "model")
        stats, reference_frame = read_reference(model, version, fields, tmp)
        drift_model = load_mlflow_sklearn(drift_uri, Path(tmp) / "drift")[0] if drift_uri else None
    accuracy = float(stats["training_accuracy"]["value"])
    reference = Reference(feature_frame(reference_frame), accuracy, primary, drift_model)
    return VersionUnderTest(model, int(version), primary, reference, stats, dict(fields))
