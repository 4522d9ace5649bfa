"""How a governed delay model turns features into a decision: one definition for every caller.

Validation, the scoring sidecar and the batch monitor all score with `score`, so the prediction a
validator judged is the prediction production serves: P(DELAYED) from the model's
``predict_proba`` and "delayed" at or above `DECISION_THRESHOLD`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

DECISION_THRESHOLD = 0.5


def score(model: Any, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(prediction 0/1, probability of DELAYED) of ``model`` on ``features``."""
    probability = np.asarray(model.predict_proba(features)[:, 1], dtype="float64")
    return (probability >= DECISION_THRESHOLD).astype("int64"), probability
