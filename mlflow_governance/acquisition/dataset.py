"""The training set as an MLflow dataset, without loading it.

MLflow's pandas digest (``mlflow.data.from_pandas(df).digest``) hashes the first
``MAX_ROWS`` rows of the numeric and all-string columns, the row count and the column names.
`parquet_digest` computes exactly that for ``pandas.read_parquet(path)`` from the first row
group(s), the Parquet metadata and the profile's null counts (which tell which columns a full
read would make float or object), so a later step that logs
``mlflow.data.from_pandas(pd.read_parquet(path))`` records the same digest and MLflow links both
runs to one dataset.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.data.digest_utils import MAX_ROWS, get_normalized_md5_digest
from mlflow.data.pandas_dataset import PandasDataset


def head_frame(path: str | Path, null_counts: dict[str, int], rows: int = MAX_ROWS) -> pd.DataFrame:
    """The first ``rows`` rows of the Parquet file with the dtypes a full ``pd.read_parquet`` gives."""
    pf = pq.ParquetFile(path)
    batches, got = [], 0
    for batch in pf.iter_batches(batch_size=rows):
        batches.append(batch)
        got += batch.num_rows
        if got >= rows:
            break
    table = pa.Table.from_batches(batches, schema=pf.schema_arrow).slice(0, rows)
    frame = table.to_pandas()
    for field in table.schema:
        # Without nulls in its head, a column that has nulls further on would come out as numpy int
        # or bool here, but float or object in the full read (extension dtypes are the same in both).
        if null_counts.get(field.name) and isinstance(frame[field.name].dtype, np.dtype):
            if pa.types.is_integer(field.type):
                frame[field.name] = frame[field.name].astype("float64")
            elif pa.types.is_boolean(field.type):
                frame[field.name] = frame[field.name].astype(object)
    return frame


def parquet_digest(path: str | Path, null_counts: dict[str, int]) -> str:
    """MLflow's pandas digest of ``pd.read_parquet(path)``, reading only its head."""
    rows = pq.ParquetFile(path).metadata.num_rows
    head = head_frame(path, null_counts)
    schema = pq.ParquetFile(path).schema_arrow
    all_strings = [
        f.name for f in schema
        if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)) and not null_counts.get(f.name)
    ]
    string_columns = head.columns[[c in all_strings for c in head.columns]]
    numeric_columns = head.select_dtypes(include=[np.number]).columns
    trimmed = head[string_columns.union(numeric_columns)]
    return get_normalized_md5_digest(
        [pd.util.hash_pandas_object(trimmed).values, np.int64(rows)] + [str(x).encode() for x in head.columns]
    )


class TrainingDataset(PandasDataset):
    """A pandas dataset over the head of the training set, with the full set's digest and size."""

    def __init__(self, head: pd.DataFrame, rows: int, **kwargs: Any):
        self._rows = rows
        super().__init__(df=head, **kwargs)

    @property
    def profile(self) -> dict[str, int]:
        return {"num_rows": self._rows, "num_elements": self._rows * len(self._df.columns)}


def training_dataset(
    path: str | Path, source: str, null_counts: dict[str, int], name: str, targets: str | None = None
) -> TrainingDataset:
    """The MLflow dataset of the Parquet training set at ``path``, recorded with ``source``."""
    rows = pq.ParquetFile(path).metadata.num_rows
    head = head_frame(path, null_counts)
    dataset = TrainingDataset(
        head,
        rows,
        source=resolve_source(source),
        targets=targets if targets in head.columns else None,
        name=name,
        digest=parquet_digest(path, null_counts),
    )
    with quiet_mlflow_data():
        dataset.schema  # noqa: B018 - inferred once, without MLflow's integer-column hint
    return dataset


@contextmanager
def quiet_mlflow_data() -> Iterator[None]:
    """Silence MLflow's advisory warnings about ambiguous local sources and integer columns."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
        warnings.filterwarnings("ignore", message=".*Integer columns in Python cannot represent missing values.*")
        yield


def resolve_source(source: str):
    """The MLflow dataset source for a URI or path (raises if MLflow cannot resolve it)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with quiet_mlflow_data():
        return resolve_dataset_source(source)
