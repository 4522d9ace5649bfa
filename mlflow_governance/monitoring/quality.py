"""Quality monitor: how good the predictions are on the rows whose label is known.

Accuracy, precision, recall and F1 (positive class 1 = delayed) and the area under the ROC
curve, on the labelled rows of the window (NaN labels are not yet known and are dropped).
Labels arrive late and a few of them prove nothing, so below ``min_labels`` labelled rows the
verdict is INSUFFICIENT instead of a pass or a fail. Each metric may have a lower bound; by
default only ROC AUC >= 0.8 is judged (Watson OpenScale's default quality threshold), the rest
are shown. A metric that is undefined on the window (ROC AUC with one class only, precision
without a positive prediction) is reported as such, never as 0.

The figures equal scikit-learn's (``accuracy_score``, ``precision_score``... with class 1 as
positive, ``roc_auc_score``); they are computed from one confusion matrix and one ROC curve,
which the details carry for the report.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlflow_governance.core.monitor_config import QUALITY_METRICS, QualityConfig
from mlflow_governance.monitoring.base import (
    BREACH,
    INSUFFICIENT,
    Figure,
    Reference,
    Result,
    Window,
    fmt,
    fmt_pair,
    judge,
    number,
    overall,
)

ROC_POINTS = 101
NAME = "quality"


class QualityMonitor:
    """Quality figures on labelled rows, judged against configured lower bounds."""

    name = NAME

    def __init__(self, config: QualityConfig) -> None:
        self.config = config

    @classmethod
    def prepare(cls, config: QualityConfig, reference: Reference | None = None) -> QualityMonitor:
        """Quality needs nothing from the reference."""
        return cls(config)

    def evaluate(self, window: Window) -> Result:
        y, pred, proba = _labelled(window)
        n, needed = len(y), self.config.min_labels
        if n < needed:
            figures = tuple(self._figure(m, None, INSUFFICIENT) for m in QUALITY_METRICS)
            details = {"labelled_rows": n, "unlabelled_rows": len(window) - n, "min_labels": needed,
                       "confusion_matrix": None, "roc_curve": None}
            return Result(NAME, INSUFFICIENT, f"not enough labels: {n} of the {needed} needed", figures, details)
        values, details = quality_figures(y, pred, proba)
        details.update({"unlabelled_rows": len(window) - n, "min_labels": needed})
        figures = tuple(self._figure(m, values[m]) for m in QUALITY_METRICS)
        verdict = overall([f.verdict for f in figures])
        return Result(NAME, verdict, self._reason(verdict, figures, details), figures, details)

    def _figure(self, metric: str, value: float | None, verdict: str | None = None) -> Figure:
        threshold = self.config.threshold(metric)
        comparison = ">=" if threshold is not None else ""
        if verdict is None or threshold is None:
            verdict = judge(value, threshold, comparison)
        return Figure(f"{NAME}.{metric}", value, threshold, comparison, verdict)

    def _reason(self, verdict: str, figures: tuple[Figure, ...], details: dict[str, Any]) -> str:
        n = details["labelled_rows"]
        judged = [f for f in figures if f.threshold is not None]
        metric = {f.key: f.key.split(".", 1)[1] for f in figures}
        if verdict == BREACH:
            parts = []
            for f in judged:
                if f.verdict == BREACH:
                    value, bound = fmt_pair(f.value, f.threshold)
                    parts.append(f"{metric[f.key]} {value} is below {bound}")
            return f"{'; '.join(parts)} on {n} labelled rows"
        if verdict == INSUFFICIENT:
            undefined = [metric[f.key] for f in judged if f.verdict == INSUFFICIENT]
            return f"{', '.join(undefined)} undefined on the {n} labelled rows: {_why_undefined(details)}"
        if not judged:
            return f"no quality threshold is configured; the figures on {n} labelled rows are informational"
        met = ", ".join(f"{metric[f.key]} {fmt(f.value)} >= {fmt(f.threshold)}" for f in judged)
        return f"{met} on {n} labelled rows"


def _labelled(window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if window.labels is None:
        empty = np.empty(0)
        return empty.astype("int64"), empty.astype("int64"), empty
    known = ~np.isnan(window.labels)
    y = window.labels[known]
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("quality: window labels must be 0, 1 or NaN (unknown)")
    pred = np.asarray(window.prediction)[known].astype("int64")
    return y.astype("int64"), pred, window.probability[known]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _why_undefined(details: dict[str, Any]) -> str:
    (tn, fp), (fn, tp) = details["confusion_matrix"]
    if tp + fn == 0 or tn + fp == 0:
        return f"every labelled row is DELAYED={1 if tn + fp == 0 else 0} (one class only)"
    if tp + fp == 0:
        return "the model predicted no delayed flight"
    return "a metric's denominator is zero"


def quality_figures(y: np.ndarray, pred: np.ndarray, proba: np.ndarray) -> tuple[dict[str, float | None], dict]:
    """The five metrics (None where undefined) and the confusion matrix / ROC curve details."""
    from sklearn.metrics import auc, roc_curve

    tp = int(np.count_nonzero((y == 1) & (pred == 1)))
    fp = int(np.count_nonzero((y == 0) & (pred == 1)))
    fn = int(np.count_nonzero((y == 1) & (pred == 0)))
    tn = len(y) - tp - fp - fn
    values: dict[str, float | None] = {
        "accuracy": _ratio(tp + tn, len(y)),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": None,
    }
    curve = None
    if tp + fn and tn + fp:
        fpr, tpr, _ = roc_curve(y, proba)
        values["roc_auc"] = float(auc(fpr, tpr))
        keep = np.unique(np.round(np.linspace(0, len(fpr) - 1, min(ROC_POINTS, len(fpr)))).astype("int64"))
        curve = {"fpr": [float(v) for v in fpr[keep]], "tpr": [float(v) for v in tpr[keep]]}
    details = {
        "labelled_rows": len(y),
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "roc_curve": curve,
        "values": {k: number(v) for k, v in values.items()},
    }
    return values, details
