"""Estimated accuracy monitor: the accuracy the drift detection model expects, before labels arrive.

Watson OpenScale's "drift" in the accuracy sense: the version's drift detection model
(`mlflow_governance.training.drift`) gives, per row, the probability that the primary model's
prediction is right; their mean over the window estimates the primary model's accuracy there.
``estimated_accuracy.drop`` is the accuracy measured at development minus that estimate, and
the monitor breaches when the drop exceeds ``max_drop`` (default 0.05: a few points).

The drift model's input is the raw feature columns plus the primary model's probability
(``PRIMARY_PROBABILITY``). The window already carries that probability, so the primary model is
not run again: the monitor builds the input from ``window.features`` and
``window.probability``, as `drift.drift_inputs` would from the primary model. The window's
probabilities must therefore come from the version's primary model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlflow_governance.core.features import FEATURES
from mlflow_governance.core.monitor_config import EstimatedAccuracyConfig
from mlflow_governance.monitoring.base import (
    BREACH,
    INFO,
    INSUFFICIENT,
    Figure,
    Reference,
    Result,
    Window,
    fmt,
    fmt_pair,
    judge,
    require_columns,
)
from mlflow_governance.training.drift import PROBABILITY_COLUMN

NAME = "estimated_accuracy"


def drift_model_inputs(features: pd.DataFrame, probability: np.ndarray) -> pd.DataFrame:
    """The drift model's input frame: the FEATURES columns plus the primary model's probability."""
    out = features[list(FEATURES)].copy()
    out[PROBABILITY_COLUMN] = np.asarray(probability, dtype="float64")
    return out


class EstimatedAccuracyMonitor:
    """Mean P(correct) of the drift detection model, against the accuracy measured at development."""

    name = NAME

    def __init__(self, config: EstimatedAccuracyConfig, training_accuracy: float, drift_model: Any | None) -> None:
        self.config = config
        self.training_accuracy = float(training_accuracy)
        self.drift_model = drift_model

    @classmethod
    def prepare(cls, config: EstimatedAccuracyConfig, reference: Reference) -> EstimatedAccuracyMonitor:
        return cls(config, reference.training_accuracy, reference.drift_model)

    def estimate(self, window: Window) -> float:
        """The primary model's estimated accuracy on ``window`` (mean P(correct))."""
        inputs = drift_model_inputs(window.features, window.probability)
        return float(np.mean(self.drift_model.predict_proba(inputs)[:, 1]))

    def evaluate(self, window: Window) -> Result:
        cfg = self.config
        n = len(window)
        details: dict[str, Any] = {"rows": n, "min_rows": cfg.min_rows, "training_accuracy": self.training_accuracy,
                                   "max_drop": cfg.max_drop}
        if self.drift_model is None:
            return self._insufficient("no drift detection model is recorded on this version", details)
        if n < cfg.min_rows:
            return self._insufficient(f"not enough rows: {n} of the {cfg.min_rows} needed", details)
        require_columns(window.features, FEATURES, NAME)
        value = self.estimate(window)
        drop = self.training_accuracy - value
        verdict = judge(drop, cfg.max_drop, "<=")
        shown, bound = fmt_pair(drop, cfg.max_drop)
        against = f"estimated accuracy {fmt(value, 3)}"
        measured = f"the {fmt(self.training_accuracy, 3)} measured at development"
        if verdict == BREACH:
            reason = f"{against} is {shown} below {measured}, more than the {bound} allowed"
        elif drop > 0:
            reason = f"{against} is {fmt(drop, 3)} below {measured}, within the {bound} allowed"
        else:
            reason = f"{against} is not below {measured}"
        details.update(estimated_accuracy=value, drop=drop)
        figures = (
            Figure(f"{NAME}.value", value, None, "", INFO),
            Figure(f"{NAME}.drop", drop, cfg.max_drop, "<=", verdict),
        )
        return Result(NAME, verdict, reason, figures, details)

    def _insufficient(self, reason: str, details: dict[str, Any]) -> Result:
        figures = (
            Figure(f"{NAME}.value", None, None, "", INFO),
            Figure(f"{NAME}.drop", None, self.config.max_drop, "<=", INSUFFICIENT),
        )
        return Result(NAME, INSUFFICIENT, reason, figures, details)
