"""The one small interface every production monitor implements, and the values it exchanges.

A monitor is *prepared once* from a `Reference` (what development recorded on the version:
a sample of training rows, the measured accuracy, the fitted models) and then evaluates any
number of `Window` s of scored rows cheaply. A window may be a whole validation month or a few
minutes of live traffic: nothing here assumes either. The outcome of one evaluation is a
`Result`: a verdict, one human sentence, the figures behind the verdict and JSON-serialisable
details for a report.

Verdicts: PASS, BREACH, or INSUFFICIENT when the window does not hold enough evidence to judge
(too few labels, too small a group, no drift model). A `Figure` that is shown but not judged
has the verdict ``"info"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

PASS, BREACH, INSUFFICIENT = "pass", "breach", "insufficient"
INFO = "info"
VERDICTS: tuple[str, ...] = (PASS, BREACH, INSUFFICIENT)
REFERENCE_ROWS = 10_000
REFERENCE_SEED = 42


@dataclass(frozen=True)
class Window:
    """A window of scored rows: features, the model's 0/1 prediction and P(DELAYED), and labels
    (float: 0/1 where known, NaN where not yet known; None when the window has no labels)."""

    features: pd.DataFrame
    prediction: np.ndarray
    probability: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        rows = len(self.features)
        prediction = np.asarray(self.prediction).reshape(-1)
        probability = np.asarray(self.probability, dtype="float64").reshape(-1)
        labels = None if self.labels is None else np.asarray(self.labels, dtype="float64").reshape(-1)
        for name, values in (("prediction", prediction), ("probability", probability), ("labels", labels)):
            if values is not None and len(values) != rows:
                raise ValueError(f"window: {name} has {len(values)} values for {rows} feature rows")
        object.__setattr__(self, "prediction", prediction)
        object.__setattr__(self, "probability", probability)
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.features)


@dataclass(frozen=True)
class Reference:
    """What development recorded on the version, which every monitor is prepared from."""

    features: pd.DataFrame
    training_accuracy: float
    primary: Any | None = None
    drift_model: Any | None = None


@dataclass(frozen=True)
class Figure:
    """One number of a result: its value, the bound it is judged against and the verdict."""

    key: str
    value: float | None
    threshold: float | None
    comparison: str
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "threshold": self.threshold, "comparison": self.comparison, "verdict": self.verdict}


@dataclass(frozen=True)
class Result:
    """The outcome of one monitor on one window."""

    monitor: str
    verdict: str
    reason: str
    figures: tuple[Figure, ...]
    details: dict

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "details": self.details}


@runtime_checkable
class Monitor(Protocol):
    """Prepared once from a `Reference`; ``evaluate`` is called per window."""

    name: str

    def evaluate(self, window: Window) -> Result: ...


def number(value: Any) -> float | None:
    """A plain float for JSON, or None for missing / NaN / infinite values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def judge(value: float | None, threshold: float | None, comparison: str) -> str:
    """The verdict of ``value`` against ``threshold`` (INFO when not judged, INSUFFICIENT when
    the value is undefined)."""
    if threshold is None or not comparison:
        return INFO
    if value is None:
        return INSUFFICIENT
    ok = value >= threshold if comparison == ">=" else value <= threshold
    return PASS if ok else BREACH


def overall(verdicts: Sequence[str]) -> str:
    """BREACH if any verdict is a breach, else INSUFFICIENT if any is, else PASS."""
    if BREACH in verdicts:
        return BREACH
    if INSUFFICIENT in verdicts:
        return INSUFFICIENT
    return PASS


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """ValueError naming the columns ``what`` needs that ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: the window lacks feature column(s) {', '.join(missing)}")


def reference_sample(features: pd.DataFrame, rows: int = REFERENCE_ROWS, seed: int = REFERENCE_SEED) -> pd.DataFrame:
    """At most ``rows`` reference rows: all of them, or one seeded sample (taken once, at prepare)."""
    if len(features) <= rows:
        return features
    return features.sample(n=rows, random_state=seed)


def fmt(value: float | None, digits: int = 2) -> str:
    """A figure for a reason sentence; "undefined" for None."""
    return "undefined" if value is None else f"{value:.{digits}f}"


def fmt_pair(value: float, threshold: float) -> tuple[str, str]:
    """``value`` and ``threshold`` with two decimals, or as many more as it takes to tell them apart."""
    for digits in range(2, 7):
        a, b = fmt(value, digits), fmt(threshold, digits)
        if a != b or value == threshold:
            return a, b
    return fmt(value, 6), fmt(threshold, 6)
