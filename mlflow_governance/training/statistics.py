"""``training_data_statistics.json``: what the training data looked like, for the monitors.

Describes the labeled rows development used (rows with a missing label are dropped and counted):
per feature its type and distribution (quantiles, a 10-bin histogram, mean/std/min/max and
missing count for numeric; category frequencies for categorical), the label distribution, the
row counts (file, dropped, used, per split) and a seeded reference sample of rows that drift
monitoring compares live traffic with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlflow_governance.flights import LABEL
from mlflow_governance.training.data import CATEGORICAL_FEATURES, NUMERIC_FEATURES, LabeledData

SCHEMA_VERSION = 1
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
HISTOGRAM_BINS = 10
REFERENCE_SAMPLE_ROWS = 500


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _records(X: pd.DataFrame, y: pd.Series) -> list[dict[str, Any]]:
    """Rows as JSON records: numbers as floats, categories as strings, missing as null."""
    out = []
    for (_, row), label in zip(X.iterrows(), y, strict=True):
        record: dict[str, Any] = {c: _number(row[c]) for c in NUMERIC_FEATURES}
        record.update({c: None if pd.isna(row[c]) else str(row[c]) for c in CATEGORICAL_FEATURES})
        record[LABEL] = int(label)
        out.append(record)
    return out


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
    sample_index = frame.sample(n=min(reference_rows, len(frame)), random_state=seed).index.sort_values()
    records = _records(X.loc[sample_index], frame.loc[sample_index, LABEL])
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
        "reference_sample": {"rows": len(records), "seed": seed, "records": records},
    }
