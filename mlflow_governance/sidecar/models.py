"""What one worker keeps of the versions it serves: their loaded models and their explainers.

`ModelCache` loads each served version once per worker (the `gate` calls it when a version
starts being served), with the project's skops allowlist (`model_files.load_mlflow_sklearn`),
never MLflow's own loader, and keeps the current and the previous version (`ServedModel`: the
estimator and its signature columns). `ExplainerCache` builds a version's explainer at its first
``/explain`` and runs one explanation at a time.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_governance.sidecar import bodies, gate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version: the estimator and the signature columns it is checked against."""

    version: int
    estimator: Any
    columns: list[bodies.Column]


def _single_threaded(estimator: Any) -> None:
    """``n_jobs=1`` on every step that has it: a worker scores on one core (joblib ignores
    threadpoolctl, and a forest saved with ``n_jobs=-1`` would start a thread per core per call)."""
    try:
        params = estimator.get_params(deep=True)
    except Exception:  # noqa: BLE001 - not a scikit-learn estimator: leave it as it is
        return
    keys = {k: 1 for k, v in params.items() if (k == "n_jobs" or k.endswith("__n_jobs")) and v not in (None, 1)}
    if keys:
        try:
            estimator.set_params(**keys)
        except Exception:  # noqa: BLE001 - a step that refuses keeps its setting
            log.warning("could not set n_jobs=1 on %s", sorted(keys))


class ModelCache:
    """Models by version, loaded once per worker (the current and the previous version are kept)."""

    def __init__(self, model: str, keep: int = 2):
        self.model = model
        self.keep = keep
        self._models: dict[int, ServedModel] = {}
        self._lock = threading.Lock()

    def load(self, version: int) -> ServedModel:
        with self._lock:
            found = self._models.get(version)
            if found is not None:
                return found
            from mlflow_governance.safe.model_files import load_mlflow_sklearn

            with tempfile.TemporaryDirectory(prefix="mlgov-serve-model-") as tmp:
                estimator, document = load_mlflow_sklearn(f"models:/{self.model}/{version}", Path(tmp) / "model")
            if not hasattr(estimator, "predict_proba"):
                raise ValueError(f"{self.model} version {version} has no predict_proba: the sidecar serves "
                                 "probabilistic classifiers")
            _single_threaded(estimator)
            served = ServedModel(version, estimator, bodies.columns_from_mlmodel(document))
            self._models[version] = served
            while len(self._models) > self.keep:
                self._models.pop(next(iter(self._models)))
            log.info("loaded %s version %s", self.model, version)
            return served


class ExplainerCache:
    """The explainer of each served version, built at the first ``/explain`` a worker answers for it
    (SHAP imported, the version's reference sample read through the registry) and kept while the
    version is served. One explanation at a time per worker: an explanation keeps a core busy, and
    SHAP's kernel explainer keeps state per call."""

    def __init__(self, model: str, fields_of: Callable[[int], dict[str, str]], keep: int = 2):
        self.model = model
        self.fields_of = fields_of
        self.keep = keep
        self._explainers: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _get(self, served: ServedModel) -> Any:
        from mlflow_governance.scoring import explanations

        found = self._explainers.get(served.version)
        if found is not None and found.model is served.estimator:
            return found
        try:
            fields = self.fields_of(served.version)
        except Exception as exc:  # noqa: BLE001 - the registry cannot be read: no reference, no explanation
            raise explanations.ExplanationUnavailable(
                f"the fields of {self.model} version {served.version} cannot be read: {gate._reason(exc)}") from exc
        explainer = explanations.for_version(self.model, served.version, served.estimator,
                                             [c.name for c in served.columns], fields)
        self._explainers[served.version] = explainer
        while len(self._explainers) > self.keep:
            self._explainers.pop(next(iter(self._explainers)))
        log.info("explainer of %s version %s ready (%s)", self.model, served.version, explainer.method)
        return explainer

    def explain(self, served: ServedModel, rows: bodies.Rows) -> tuple[Any, list[Any]]:
        with self._lock:
            explainer = self._get(served)
            return explainer, explainer.explain(rows.frame())
