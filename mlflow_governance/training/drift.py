"""The drift detection model, as Watson OpenScale builds it.

A secondary classifier learns, from the input features and the primary model's probability,
whether the primary model's prediction is correct. It is trained on held-out rows the primary
model never saw (the validation split) and calibrated on the test split. On unlabeled traffic
the mean of its P(correct) estimates the primary model's accuracy, so an accuracy drop shows
before labels arrive.

The logged drift model takes the raw feature columns plus ``PRIMARY_PROBABILITY`` (the primary
model's probability of DELAYED); `drift_inputs` builds that frame and `estimate_accuracy`
does the whole estimate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from mlflow_governance.core.features import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES
from mlflow_governance.training.pipeline import ordinal_preprocessor

PROBABILITY_COLUMN = "PRIMARY_PROBABILITY"
DRIFT_INPUTS: tuple[str, ...] = (*FEATURES, PROBABILITY_COLUMN)
CALIBRATION_BINS = 10
DELAY_BUCKETS = ((-np.inf, 0.0, "early (<0)"), (0.0, 15.0, "0-15"), (15.0, 60.0, "15-60"), (60.0, np.inf, ">=60"))


def primary_probability(primary: BaseEstimator, X: pd.DataFrame) -> np.ndarray:
    """The primary model's probability of class 1 (delayed)."""
    return primary.predict_proba(X)[:, 1]


def drift_inputs(primary: BaseEstimator, X: pd.DataFrame) -> pd.DataFrame:
    """The drift model's input: the raw feature columns plus the primary model's probability."""
    out = X[list(FEATURES)].copy()
    out[PROBABILITY_COLUMN] = primary_probability(primary, X)
    return out


def correctness(primary: BaseEstimator, X: pd.DataFrame, y: pd.Series) -> np.ndarray:
    """1 where the primary model's prediction equals the label, else 0."""
    return (primary.predict(X) == np.asarray(y)).astype("int64")


def build_detector(seed: int) -> Pipeline:
    """A small, regularised gradient boosting classifier of 'primary is correct'."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    clf = HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=150,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        categorical_features=list(range(len(CATEGORICAL_FEATURES))),
        random_state=seed,
    )
    pre = ordinal_preprocessor((*NUMERIC_FEATURES, PROBABILITY_COLUMN), CATEGORICAL_FEATURES)
    return Pipeline([("preprocess", pre), ("classifier", clf)])


def fit_drift_model(primary: BaseEstimator, X: pd.DataFrame, y: pd.Series, seed: int) -> Pipeline:
    """Train the detector on held-out rows; refuses when the primary is never (or always) wrong."""
    target = correctness(primary, X, y)
    if target.min() == target.max():
        raise ValueError(
            f"the primary model is {'right' if target[0] else 'wrong'} on every held-out row: "
            "a drift detection model needs both right and wrong predictions to learn from"
        )
    return build_detector(seed).fit(drift_inputs(primary, X), target)


def estimate_accuracy(primary: BaseEstimator, detector: BaseEstimator, X: pd.DataFrame) -> float:
    """The primary model's estimated accuracy on (unlabeled) rows ``X``: mean P(correct)."""
    return float(detector.predict_proba(drift_inputs(primary, X))[:, 1].mean())


def _slice(name: str, mask: np.ndarray, p: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    return {
        "slice": name,
        "rows": int(mask.sum()),
        "estimated_accuracy": float(p[mask].mean()),
        "measured_accuracy": float(correct[mask].mean()),
    }


def calibration_report(
    primary: BaseEstimator, detector: BaseEstimator, X: pd.DataFrame, y: pd.Series, min_slice_rows: int = 50
) -> dict[str, Any]:
    """How well the detector's P(correct) matches the primary model's real correctness on ``X``."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    p = detector.predict_proba(drift_inputs(primary, X))[:, 1]
    correct = correctness(primary, X, y)
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, CALIBRATION_BINS - 1)
    bins, ece = [], 0.0
    for b in range(CALIBRATION_BINS):
        mask = which == b
        if not mask.any():
            continue
        mean_p, frac = float(p[mask].mean()), float(correct[mask].mean())
        ece += mask.mean() * abs(mean_p - frac)
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "rows": int(mask.sum()),
                "mean_estimated": mean_p,
                "fraction_correct": frac,
            }
        )
    slices = []
    for origin in sorted(X["ORIGIN_AIRPORT"].dropna().astype(str).unique()):
        mask = (X["ORIGIN_AIRPORT"].astype(str) == origin).to_numpy()
        if mask.sum() >= min_slice_rows:
            slices.append(_slice(f"ORIGIN_AIRPORT={origin}", mask, p, correct))
    delay = X["DEPARTURE_DELAY"].to_numpy(dtype="float64")
    for low, high, label in DELAY_BUCKETS:
        mask = (delay >= low) & (delay < high)
        if mask.sum() >= min_slice_rows:
            slices.append(_slice(f"DEPARTURE_DELAY {label}", mask, p, correct))
    estimated, measured = float(p.mean()), float(correct.mean())
    return {
        "rows": int(len(p)),
        "estimated_accuracy": estimated,
        "measured_accuracy": measured,
        "absolute_error": abs(estimated - measured),
        "brier_score": float(brier_score_loss(correct, p)),
        "roc_auc": float(roc_auc_score(correct, p)) if correct.min() != correct.max() else None,
        "expected_calibration_error": float(ece),
        "bins": bins,
        "slices": slices,
    }


def calibration_figure(report: dict[str, Any]):
    """Reliability diagram and estimated-vs-measured accuracy per slice (a matplotlib Figure)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    ax1, ax2 = fig.subplots(1, 2)
    xs = [b["mean_estimated"] for b in report["bins"]]
    ys = [b["fraction_correct"] for b in report["bins"]]
    ax1.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax1.plot(xs, ys, "o-", label="drift detection model")
    ax1.set(
        xlabel="estimated P(primary correct)",
        ylabel="observed fraction correct",
        title=f"Reliability (test split, ECE={report['expected_calibration_error']:.3f})",
    )
    ax1.legend(loc="upper left")
    est = [s["estimated_accuracy"] for s in report["slices"]]
    meas = [s["measured_accuracy"] for s in report["slices"]]
    lo = min([*est, *meas, report["measured_accuracy"]]) - 0.02
    ax2.plot([lo, 1], [lo, 1], "--", color="grey")
    ax2.scatter(meas, est)
    for s in report["slices"]:
        label = s["slice"].replace("ORIGIN_AIRPORT=", "").replace("DEPARTURE_DELAY ", "delay ")
        ax2.annotate(label, (s["measured_accuracy"], s["estimated_accuracy"]), fontsize=7)
    ax2.scatter([report["measured_accuracy"]], [report["estimated_accuracy"]], marker="*", s=150, label="overall")
    ax2.set(xlabel="measured accuracy", ylabel="estimated accuracy", title="Primary accuracy per slice")
    ax2.legend(loc="upper left")
    fig.tight_layout()
    return fig
