"""``training_data_statistics.json``: what the training data looked like, for the monitors.

Describes the labeled rows development used (rows with a missing label are dropped and counted):
per feature its type and distribution (quantiles, a 10-bin histogram, mean/std/min/max and
missing count for numeric; category frequencies for categorical), the label distribution, the
row counts (file, dropped, used, per split) and where the seeded reference sample lies: up to
10,000 labeled training rows, logged beside it as Parquet (`REFERENCE_ARTIFACT`), that the drift
monitor compares validation data and live traffic with (a 500-row sample flags drift between
two halves of one month; 10,000 rows do not), and the training-time accuracy the estimated
accuracy monitor measures its drop from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlflow_governance.core.features import CATEGORICAL_FEATURES, LABEL, NUMERIC_FEATURES
from mlflow_governance.training.data import LabeledData

SCHEMA_VERSION = 1
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
HISTOGRAM_BINS = 10
REFERENCE_SAMPLE_ROWS = 10_000
REFERENCE_ARTIFACT = "monitoring/reference.parquet"


def reference_sample(data: LabeledData, seed: int = 42, rows: int = REFERENCE_SAMPLE_ROWS) -> pd.DataFrame:
    """A seeded sample of up to ``rows`` labeled training rows (features and label), in file order."""
    frame = data.frame
    index = frame.sample(n=min(rows, len(frame)), random_state=seed).index.sort_values()
    return data.X.loc[index].assign(**{LABEL: frame.loc[index, LABEL].astype("int64")}).reset_index(drop=True)


def numeric_summary(values: pd.Series) -> dict[str, Any]:
    """Type, counts, moments, quantiles and a histogram of a numeric column (missing ignored)."""
    present = pd.to_numeric(values, errors="coerce").dropna().astype("float64")
    out: dict[str, Any] = {"type": "numeric", "count": int(len(present)), "missing": int(len(values) - len(present))}
    if present.empty:
        return out
    counts, edges = np.histogram(present.to_numpy(), bins=HISTOGRAM_BINS)
    out.update(
        {
            "mean": float(present.mean()),
            "std": float(present.std(ddof=0)),
            "min": float(present.min()),
            "max": float(present.max()),
            "quantiles": {str(q): float(present.quantile(q)) for q in QUANTILES},
            "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        }
    )
    return out


def categorical_summary(values: pd.Series) -> dict[str, Any]:
    """Type, counts and every category's frequency (count and share) of a categorical column."""
    present = values.dropna().astype(str)
    counts = present.value_counts(sort=True)
    return {
        "type": "categorical",
        "count": int(len(present)),
        "missing": int(len(values) - len(present)),
        "distinct": int(counts.size),
        "frequencies": {str(k): int(v) for k, v in counts.items()},
        "shares": {str(k): float(v) / max(len(present), 1) for k, v in counts.items()},
    }


def training_data_statistics(
    data: LabeledData,
    split_sizes: dict[str, int] | None = None,
    seed: int = 42,
    reference_rows: int = REFERENCE_SAMPLE_ROWS,
    source: str | None = None,
) -> dict[str, Any]:
    """The statistics document of ``data`` (JSON-serialisable)."""
    frame = data.frame
    X = data.X
    features: dict[str, Any] = {}
    for col in NUMERIC_FEATURES:
        features[col] = numeric_summary(X[col])
    for col in CATEGORICAL_FEATURES:
        features[col] = categorical_summary(X[col])
    label_counts = frame[LABEL].value_counts().sort_index()
    return {
        "schema_version": SCHEMA_VERSION,
        "source": source,
        "label": LABEL,
        "features": list(X.columns),
        "numeric_features": list(NUMERIC_FEATURES),
        "categorical_features": list(CATEGORICAL_FEATURES),
        "rows": {
            "total": int(data.rows_total),
            "missing_label_dropped": int(data.rows_missing_label),
            "used": int(len(frame)),
            "splits": dict(split_sizes or {}),
        },
        "label_distribution": {
            "counts": {str(int(k)): int(v) for k, v in label_counts.items()},
            "shares": {str(int(k)): float(v) / len(frame) for k, v in label_counts.items()},
        },
        "feature_statistics": features,
        "reference_sample": {"rows": min(reference_rows, len(frame)), "seed": seed, "artifact": REFERENCE_ARTIFACT},
    }
