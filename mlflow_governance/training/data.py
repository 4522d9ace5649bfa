"""Load the acquired training Parquet, drop unlabeled rows and split it reproducibly.

Rows whose label (DELAYED) is missing are cancelled or diverted flights: they have no outcome to
learn from, so development drops them, counts them and logs the count (``rows_missing_label``).
The split is stratified and seeded: train (fits every candidate), validation (ranks the
candidates and trains the drift detection model) and test (final metrics and the drift model's
calibration).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from mlflow_governance.core.features import (
    CATEGORICAL_FEATURES,
    INTEGER_FEATURES,
    LABEL,
    NUMERIC_FEATURES,
    REQUIRED_COLUMNS,
)

DEFAULT_SEED = 42
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
MIN_LABELED_ROWS = 100


@dataclass
class LabeledData:
    """The labeled rows of a training set and what was dropped to get them."""

    frame: pd.DataFrame
    rows_total: int
    rows_missing_label: int
    # The training set as read (unlabeled rows included): logged as the run's dataset input, so
    # its digest is the one acquisition logged for the same file and MLflow links both runs.
    source: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def X(self) -> pd.DataFrame:
        return feature_frame(self.frame)

    @property
    def y(self) -> pd.Series:
        return self.frame[LABEL].astype("int64")


@dataclass
class Split:
    """Seeded, stratified train/validation/test partitions (features and labels)."""

    X_train: pd.DataFrame
    y_train: pd.Series
    X_val: pd.DataFrame
    y_val: pd.Series
    X_test: pd.DataFrame
    y_test: pd.Series
    seed: int

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}


def local_path(uri: str, download_dir: str | None = None) -> Path:
    """A local file for ``uri``: a path, a ``file://`` URI, or any URI MLflow can download
    (into ``download_dir``, which the caller removes)."""
    text = str(uri).strip()
    if not text:
        raise ValueError("no training data given: pass --data PATH or record training_data_asset on the model")
    parsed = urlparse(text)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if not parsed.scheme or Path(text).exists():
        return Path(text)
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=download_dir))
    except Exception as exc:  # noqa: BLE001 - any download failure is a bad data URI for the user
        raise ValueError(f"cannot download training data {text!r}: {exc}") from exc


def read_training_data(uri: str) -> pd.DataFrame:
    """Read the acquired Parquet; refuses a missing file, a non-Parquet file or missing columns.

    A downloaded copy (``runs:/...`` and other artifact URIs) lives only while it is read.
    """
    with tempfile.TemporaryDirectory(prefix="mlgov-train-data-") as download_dir:
        return read_parquet(local_path(uri, download_dir), REQUIRED_COLUMNS)


def read_parquet(
    path: Path,
    required: Sequence[str],
    *,
    what: str = "training data",
    shown: str | None = None,
    columns: str = "column(s)",
    expected: str = "expected the acquisition columns",
) -> pd.DataFrame:
    """The Parquet file at ``path``, which must have the columns ``required``; a ValueError naming
    it as ``what`` ``shown`` (default: the path) when it is missing, not a readable Parquet file,
    or lacks one of them (``... lacks {columns} A, B ({expected} ...)``)."""
    shown = str(path) if shown is None else shown
    if not path.is_file():
        raise ValueError(f"{what} {shown!r} does not exist (or is not a file)")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise ValueError(f"{what} {shown!r} is not a readable Parquet file: {exc}") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} {shown!r} lacks {columns} {', '.join(missing)} ({expected} {', '.join(required)})")
    return df


def feature_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The raw feature columns as the served model takes them, typed as acquisition writes them.

    Calendar columns are integers (long) and never missing; DEPARTURE_DELAY and DISTANCE are
    doubles and the categorical columns strings, where NaN/None means missing.
    """
    out = pd.DataFrame(index=df.index)
    for col in NUMERIC_FEATURES:
        values = pd.to_numeric(df[col], errors="coerce")
        if col in INTEGER_FEATURES:
            bad = values.isna() | (values != values.round())
            if bad.any():
                raise ValueError(f"{col} must be a whole number in every row; {int(bad.sum())} row(s) are not")
            out[col] = values.astype("int64")
        else:
            out[col] = values.astype("float64")
    for col in CATEGORICAL_FEATURES:
        values = df[col].astype("object")
        out[col] = values.where(pd.notna(values), np.nan)
    return out


def label_rows(df: pd.DataFrame) -> LabeledData:
    """Drop rows with a missing label (counted); refuse labels other than 0/1 or too little data."""
    label = pd.to_numeric(df[LABEL], errors="coerce")
    bad = df[LABEL].notna() & ~label.isin([0, 1])
    if bad.any():
        examples = ", ".join(repr(v) for v in df.loc[bad, LABEL].unique()[:5])
        raise ValueError(f"{LABEL} must be 0, 1 or missing; found {examples}")
    keep = label.notna()
    frame = df.loc[keep].copy()
    frame[LABEL] = label[keep].astype("int64")
    frame = frame.reset_index(drop=True)
    if len(frame) < MIN_LABELED_ROWS:
        raise ValueError(f"training data has {len(frame)} labeled rows; at least {MIN_LABELED_ROWS} are needed")
    if frame[LABEL].nunique() < 2:
        raise ValueError(f"training data has only one {LABEL} class ({frame[LABEL].iloc[0]}): nothing to learn")
    return LabeledData(frame=frame, rows_total=len(df), rows_missing_label=int((~keep).sum()))


def split(data: LabeledData, seed: int = DEFAULT_SEED) -> Split:
    """Stratified 60/20/20 split, reproducible for a given ``seed``."""
    from sklearn.model_selection import train_test_split

    X, y = data.X, data.y
    _, val_frac, test_frac = SPLIT_FRACTIONS
    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=test_frac, random_state=seed, stratify=y)
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest, y_rest, test_size=val_frac / (1 - test_frac), random_state=seed, stratify=y_rest
    )
    return Split(X_train, y_train, X_val, y_val, X_test, y_test, seed)


def load(uri: str, seed: int = DEFAULT_SEED) -> tuple[LabeledData, Split]:
    """Read, label-filter and split the training data at ``uri``."""
    raw = read_training_data(uri)
    data = label_rows(raw)
    data.source = raw
    return data, split(data, seed)
