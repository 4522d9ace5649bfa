"""Benchmark of the model search on the full winter months (January to March).

Prints, on the seeded test split that ``mlgov train`` uses, the test ROC AUC and accuracy of the
best searched model next to two baselines: always predicting "not delayed", and a plain
logistic regression on DEPARTURE_DELAY alone. Also prints the drift detection model's estimate
of the best model's test accuracy. MLflow records go to a throw-away SQLite store.

    .venv/bin/python benchmarks/train.py [--months 1,2,3] [--quick] [--metric roc_auc]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import Pipeline

from mlflow_governance.airline.flights import parse_months, source_tables
from mlflow_governance.training import drift
from mlflow_governance.training.data import label_rows, split
from mlflow_governance.training.search import candidates, run_search


def _row(name: str, proba: np.ndarray, y) -> tuple[str, float, float]:
    return name, float(roc_auc_score(y, proba)), float(accuracy_score(y, (proba >= 0.5).astype(int)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", default="1,2,3")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--metric", default="roc_auc")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)

    months = parse_months(args.months)
    flights, airports = source_tables(months)
    data = label_rows(flights.merge(airports, on="FLIGHT_ID"))
    s = split(data, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        mlflow.set_experiment("benchmark")
        started = time.perf_counter()
        with mlflow.start_run():
            result = run_search(s, metric=args.metric, quick=args.quick)
        search_seconds = time.perf_counter() - started
        mlflow.set_tracking_uri(None)
    best = result.best
    baseline = Pipeline([("impute", SimpleImputer(strategy="median")), ("lr", LogisticRegression())])
    baseline.fit(s.X_train[["DEPARTURE_DELAY"]], s.y_train)
    rows = [
        _row(f"best of search: {result.best_candidate.name}", best.predict_proba(s.X_test)[:, 1], s.y_test),
        _row("baseline: always 'not delayed'", np.zeros(len(s.y_test)), s.y_test),
        _row(
            "baseline: logistic regression on DEPARTURE_DELAY",
            baseline.predict_proba(s.X_test[["DEPARTURE_DELAY"]])[:, 1],
            s.y_test,
        ),
    ]
    detector = drift.fit_drift_model(best, s.X_val, s.y_val, s.seed)
    report = drift.calibration_report(best, detector, s.X_test, s.y_test)

    print(
        f"months {','.join(map(str, months))}: {data.rows_total} flights, {data.rows_missing_label} without a "
        f"label dropped; split train/validation/test = {s.sizes()} (seed {s.seed})"
    )
    print(
        f"search: {len(candidates(args.quick))} candidates in {search_seconds:.0f} s, ranked by validation "
        f"{args.metric}\n"
    )
    print("| model | test ROC AUC | test accuracy |")
    print("|---|---:|---:|")
    for name, auc, acc in rows:
        print(f"| {name} | {auc:.4f} | {acc:.4f} |")
    print("\n| drift detection model (test split) | value |")
    print("|---|---:|")
    for key in (
        "estimated_accuracy",
        "measured_accuracy",
        "absolute_error",
        "roc_auc",
        "brier_score",
        "expected_calibration_error",
    ):
        print(f"| {key.replace('_', ' ')} | {report[key]:.4f} |")
    print("\nleaderboard (validation split):")
    cols = ["rank", "candidate", "roc_auc", "accuracy", "f1", "log_loss", "fit_seconds"]
    print(result.leaderboard[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
