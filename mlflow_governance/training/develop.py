"""``mlflow run . -e train`` / ``mlgov train``: search, compare, register and submit the delay model."""

from __future__ import annotations

import json

from mlflow_governance.core.features import FEATURES, NOT_FEATURES
from mlflow_governance.training.data import DEFAULT_SEED, load
from mlflow_governance.training.register import (
    DevelopmentResult,
    development_run,
    log_data,
    publish,
    require_development_allowed,
    training_data_uri,
)
from mlflow_governance.training.search import candidates, check_metric, run_search

DEVELOPMENT_SYSTEM = "mlflow-governance automatic model search"


def train(
    model: str,
    data: str | None = None,
    quick: bool = False,
    metric: str = "roc_auc",
    seed: int = DEFAULT_SEED,
    experiment: str | None = None,
    client=None,
) -> DevelopmentResult:
    """Develop a new version of governed ``model`` from the acquired Parquet ``data``.

    Refuses (before reading data or logging anything) unless the model is Approved for
    Development and the acting user is a ModelDeveloper. Without ``data`` the model's
    ``training_data_asset`` field is used.
    """
    import mlflow

    from mlflow_governance.client.governance import GovernanceClient

    check_metric(metric)
    client = client or GovernanceClient()
    status = require_development_allowed(client, model)
    source = training_data_uri(data, status)
    labeled, split = load(source, seed)
    with development_run(model, experiment, run_name=f"train {model}") as run:
        mlflow.log_params(
            {
                "governed_model": model,
                "training_data": source,
                "split_seed": seed,
                "selection_metric": metric,
                "quick_search": quick,
                "candidates": len(candidates(quick)),
                "features": json.dumps(list(FEATURES)),
                "not_features": json.dumps(list(NOT_FEATURES)),
            }
        )
        log_data(labeled, split, source)
        result = run_search(split, metric=metric, quick=quick)
        mlflow.log_params({"best_candidate": result.best_candidate.name, "best_family": result.best_candidate.family})
        return publish(
            client, model, run, result.best, labeled, split, result.leaderboard, metric, DEVELOPMENT_SYSTEM, source
        )
