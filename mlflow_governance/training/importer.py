"""``mlgov import-model``: govern a scikit-learn model developed on an outside platform.

The file is a skops (``.skops``) file of a fitted binary scikit-learn classifier that takes the
raw feature columns. It is loaded under the project's model-loading policy
(`mlflow_governance.safe.model_files`): only if every type it needs is in the allowlist (scikit-learn's
public estimators, their known helpers, NumPy/SciPy value types), checked on the schema before
any object is built. Pickle and joblib files (``.pkl``, ``.pickle``, ``.joblib``) are refused
without being opened, since unpickling runs code from the file; the message says how to convert
one to skops. The model is re-saved with skops, scored on the same seeded split as
`develop.train`, and gets the same statistics, drift detection model, one-row leaderboard and
submission.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
from sklearn.base import BaseEstimator

from mlflow_governance.safe.model_files import load_model_file, skops_types_for
from mlflow_governance.training.data import DEFAULT_SEED, Split, load
from mlflow_governance.training.register import (
    DevelopmentResult,
    development_run,
    log_data,
    publish,
    require_development_allowed,
    training_data_uri,
)
from mlflow_governance.training.search import check_metric, evaluate, rank


def load_outside_model(model_file: str | Path) -> BaseEstimator:
    """The fitted binary scikit-learn classifier in ``model_file``; ValueError saying why not."""
    from sklearn.base import is_classifier
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    path = Path(model_file)
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist")
    try:
        model = load_model_file(path)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - building a crafted skops file can raise anything
        raise ValueError(f"{path} does not load as a scikit-learn estimator: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, BaseEstimator):
        raise ValueError(
            f"{path} does not load as a scikit-learn estimator: it holds a {type(model).__module__}."
            f"{type(model).__qualname__}"
        )
    if not is_classifier(model) or not hasattr(model, "predict_proba"):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a classifier with predict_proba")
    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise ValueError(f"{path} holds an unfitted {type(model).__name__}: fit it before importing") from exc
    classes = [int(c) if str(c).lstrip("-").isdigit() else c for c in getattr(model, "classes_", [])]
    if sorted(classes) != [0, 1]:
        raise ValueError(f"{path} holds a classifier of classes {classes}; the delay model predicts 0/1 (DELAYED)")
    return model


def _check_scores(model: BaseEstimator, split: Split, path: Path) -> None:
    try:
        model.predict_proba(split.X_val.head(50))
    except Exception as exc:  # noqa: BLE001 - any failure means the model does not fit our columns
        raise ValueError(
            f"{path} does not score the raw feature columns ({', '.join(split.X_val.columns)}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def import_model(
    model_file: str | Path,
    model: str,
    data: str | None = None,
    metric: str = "roc_auc",
    seed: int = DEFAULT_SEED,
    development_system: str | None = None,
    experiment: str | None = None,
    client=None,
) -> DevelopmentResult:
    """Register the outside model in ``model_file`` as a new governed version of ``model`` and submit it."""
    import mlflow

    from mlflow_governance.client.governance import GovernanceClient

    check_metric(metric)
    client = client or GovernanceClient()
    status = require_development_allowed(client, model)
    path = Path(model_file)
    estimator = load_outside_model(path)
    skops_types_for(estimator)  # it must re-save with skops before anything is logged
    source = training_data_uri(data, status)
    labeled, split = load(source, seed)
    _check_scores(estimator, split, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with development_run(model, experiment, run_name=f"import {model}") as run:
        mlflow.log_params(
            {
                "governed_model": model,
                "training_data": source,
                "split_seed": seed,
                "selection_metric": metric,
                "imported_file": path.name,
                "imported_sha256": digest,
                "estimator": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
            }
        )
        mlflow.log_artifact(str(path), "imported_model_file")
        log_data(labeled, split, source)
        row = {
            "candidate": f"imported:{type(estimator).__name__}",
            "family": "imported",
            "params": path.name,
            **evaluate(estimator, split.X_val, split.y_val),
            "fit_seconds": float("nan"),
            "run_id": run.info.run_id,
        }
        system = development_system or f"outside platform (imported from {path.name}, sha256 {digest[:12]})"
        return publish(
            client, model, run, estimator, labeled, split, rank(pd.DataFrame([row]), metric), metric, system, source
        )
