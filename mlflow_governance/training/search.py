"""Automatic model search in the spirit of AutoAI: a few families, a small grid each.

Every candidate is fitted on the train split and scored on the validation split inside its own
nested MLflow run (family, hyper-parameters, the six metrics, fit time). The leaderboard ranks
the candidates by the chosen metric; the best one is registered.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from mlflow_governance.training import METRICS
from mlflow_governance.training.data import Split
from mlflow_governance.training.pipeline import build_pipeline

LOWER_IS_BETTER = frozenset({"log_loss"})
FAMILIES: tuple[str, ...] = ("logistic_regression", "random_forest", "hist_gradient_boosting")

GRID: dict[str, list[dict[str, Any]]] = {
    "logistic_regression": [{"C": 0.01}, {"C": 0.1}, {"C": 1.0}],
    "random_forest": [
        {"n_estimators": 150, "max_depth": 12, "min_samples_leaf": 5},
        {"n_estimators": 150, "max_depth": 20, "min_samples_leaf": 2},
        {"n_estimators": 150, "max_depth": None, "min_samples_leaf": 10},
    ],
    "hist_gradient_boosting": [
        {"learning_rate": 0.05, "max_iter": 300, "max_leaf_nodes": 31},
        {"learning_rate": 0.1, "max_iter": 200, "max_leaf_nodes": 31},
        {"learning_rate": 0.1, "max_iter": 200, "max_leaf_nodes": 63, "l2_regularization": 1.0},
    ],
}
QUICK_GRID: dict[str, list[dict[str, Any]]] = {
    "logistic_regression": [{"C": 0.1}, {"C": 1.0}],
    "random_forest": [{"n_estimators": 40, "max_depth": 10, "min_samples_leaf": 5}],
    "hist_gradient_boosting": [{"learning_rate": 0.1, "max_iter": 100, "max_leaf_nodes": 31}],
}


def check_metric(metric: str) -> str:
    """The metric name, or ValueError listing the choices."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


@dataclass(frozen=True)
class Candidate:
    """One point of the search: a family and its hyper-parameters."""

    family: str
    params: dict[str, Any]

    @property
    def name(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.family}({args})"


def candidates(quick: bool = False) -> list[Candidate]:
    """The candidates of a full or a quick search, in a fixed order."""
    grid = QUICK_GRID if quick else GRID
    return [Candidate(family, dict(params)) for family in FAMILIES for params in grid[family]]


def evaluate(model: BaseEstimator, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (class 1 = delayed), ROC AUC and log loss of ``model``."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score

    proba = model.predict_proba(X)[:, 1]
    pred = (proba >= 0.5).astype("int64")
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, proba)),
        "log_loss": float(log_loss(y, proba, labels=[0, 1])),
    }


def rank(board: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Sort a leaderboard best-first by ``metric`` and number the rows (rank 1 = best)."""
    board = board.sort_values(metric, ascending=metric in LOWER_IS_BETTER, kind="stable").reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    return board


@dataclass
class SearchResult:
    """The leaderboard (best first) and the fitted best pipeline."""

    leaderboard: pd.DataFrame
    best: Pipeline
    best_candidate: Candidate

    @property
    def best_row(self) -> dict[str, Any]:
        return self.leaderboard.iloc[0].to_dict()


def run_search(split: Split, metric: str = "roc_auc", quick: bool = False) -> SearchResult:
    """Fit and score every candidate, each in a nested run of the active MLflow run."""
    import mlflow

    check_metric(metric)
    rows: list[dict[str, Any]] = []
    best: tuple[float, Candidate, Pipeline] | None = None
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    for cand in candidates(quick):
        with mlflow.start_run(run_name=cand.name, nested=True) as child:
            mlflow.log_params({"family": cand.family, **cand.params})
            model = build_pipeline(cand.family, cand.params, seed=split.seed)
            started = time.perf_counter()
            model.fit(split.X_train, split.y_train)
            fit_seconds = time.perf_counter() - started
            scores = evaluate(model, split.X_val, split.y_val)
            mlflow.log_metrics({**scores, "fit_seconds": fit_seconds})
            mlflow.set_tag("candidate", cand.name)
        if best is None or sign * scores[metric] > best[0]:
            best = (sign * scores[metric], cand, model)  # keep only the best fitted pipeline in memory
        rows.append(
            {
                "candidate": cand.name,
                "family": cand.family,
                "params": json.dumps(cand.params, sort_keys=True),
                **scores,
                "fit_seconds": round(fit_seconds, 3),
                "run_id": child.info.run_id,
            }
        )
    assert best is not None
    return SearchResult(leaderboard=rank(pd.DataFrame(rows), metric), best=best[2], best_candidate=best[1])
