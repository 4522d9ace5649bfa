"""Streaming sorted-merge join of two key-ordered Arrow batch streams.

Both sides arrive ordered by an integer key (the databases sort them: ``ORDER BY`` the key).
The join keeps a buffer per side and repeatedly reads from the side that is behind. Every key
below the smaller of the two buffer maxima is complete on both sides, so that part is joined and
emitted, and the buffers only ever hold about one chunk per side: memory is bounded by the chunk
size, not by the table size. Output rows come in key order (then left order, then right order),
so the result is deterministic whatever the engines and chunk sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from mlflow_governance.acquisition.errors import AcquisitionError

HOWS = ("inner", "left")
SAMPLE_KEYS = 20


@dataclass(frozen=True)
class JoinSpec:
    """The join definition: key, join type, the two table templates and the columns of each side."""

    key: str = "FLIGHT_ID"
    how: str = "inner"
    flights_table: str = "{MONTH}_FLIGHT_INFORMATION"
    airports_table: str = "{month}_airport_information"
    flight_columns: tuple[str, ...] | None = None
    airport_columns: tuple[str, ...] | None = None

    def describe(self) -> dict:
        return {
            "key": self.key,
            "how": self.how,
            "flights_table": self.flights_table,
            "airports_table": self.airports_table,
            "flight_columns": list(self.flight_columns) if self.flight_columns else "default",
            "airport_columns": list(self.airport_columns) if self.airport_columns else "default",
        }


@dataclass
class JoinStats:
    """Counts of one join: rows per side and joined, matched and unmatched keys (with samples)."""

    left_rows: int = 0
    right_rows: int = 0
    joined_rows: int = 0
    matched_keys: int = 0
    unmatched_left_keys: int = 0
    unmatched_right_keys: int = 0
    unmatched_left_sample: list[int] = field(default_factory=list)
    unmatched_right_sample: list[int] = field(default_factory=list)
    max_buffered_rows: int = 0


class _Side:
    def __init__(self, batches: Iterable[pa.RecordBatch], schema: pa.Schema, key: str, name: str):
        self.batches = iter(batches)
        self.schema = schema
        self.key = key
        self.name = name
        self.buffer = schema.empty_table()
        self.keys = np.empty(0, dtype=np.int64)
        self.done = False
        self.last: int | None = None

    @property
    def empty(self) -> bool:
        return self.buffer.num_rows == 0

    @property
    def max(self) -> int:
        return int(self.keys[-1])

    def fetch(self) -> None:
        try:
            batch = next(self.batches)
        except StopIteration:
            self.done = True
            return
        keys = batch.column(self.key)
        if keys.null_count:
            raise AcquisitionError(f"the {self.name} side returned rows without a {self.key}")
        values = keys.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        if len(values) and (
            (self.last is not None and values[0] < self.last) or bool(np.any(values[1:] < values[:-1]))
        ):
            raise AcquisitionError(
                f"the {self.name} database did not return {self.key} in ascending order; the join needs "
                "an integer key that the database can sort"
            )
        if len(values):
            self.last = int(values[-1])
        self.buffer = pa.Table.from_batches(_live(self.buffer) + [batch], schema=self.schema)
        self.keys = np.concatenate([self.keys, values])

    def take_below(self, bound: int | None) -> tuple[pa.Table, np.ndarray]:
        """Remove and return the rows with key < ``bound`` (all rows when None)."""
        cut = len(self.keys) if bound is None else int(np.searchsorted(self.keys, bound, side="left"))
        head, head_keys = self.buffer.slice(0, cut), self.keys[:cut]
        rest = self.buffer.slice(cut)
        self.buffer = pa.Table.from_batches(_live(rest), schema=self.schema)
        self.keys = self.keys[cut:].copy()
        return head, head_keys


def _live(table: pa.Table) -> list[pa.RecordBatch]:
    """The non-empty batches of ``table``. A zero-length slice still references its whole batch,
    so keeping one in the buffer would keep every batch ever read alive."""
    return [b for b in table.to_batches() if b.num_rows]


def output_schema(left: pa.Schema, right: pa.Schema, key: str) -> pa.Schema:
    """The joined schema: the left columns, then the right columns except the key."""
    clash = [n for n in right.names if n != key and n in left.names]
    if clash:
        raise AcquisitionError(
            f"column {', '.join(clash)} is selected from both sources; select it from one side only"
        )
    return pa.schema(list(left) + [f for f in right if f.name != key])


def merge_join(
    left: Iterable[pa.RecordBatch],
    right: Iterable[pa.RecordBatch],
    left_schema: pa.Schema,
    right_schema: pa.Schema,
    key: str,
    how: str = "inner",
    stats: JoinStats | None = None,
    names: tuple[str, str] = ("flights", "airports"),
) -> Iterator[pa.Table]:
    """Join two key-ordered batch streams; yields joined tables in key order, fills ``stats``."""
    if how not in HOWS:
        raise AcquisitionError(f"join type must be one of {', '.join(HOWS)}, not {how!r}")
    stats = stats if stats is not None else JoinStats()
    schema = output_schema(left_schema, right_schema, key)
    lside, rside = _Side(left, left_schema, key, names[0]), _Side(right, right_schema, key, names[1])
    while True:
        if lside.done and rside.done:
            bound = None
        else:
            if not lside.done and (lside.empty or rside.done or (not rside.empty and lside.max <= rside.max)):
                lside.fetch()
            else:
                rside.fetch()
            stats.max_buffered_rows = max(stats.max_buffered_rows, lside.buffer.num_rows + rside.buffer.num_rows)
            open_sides = [s for s in (lside, rside) if not s.done]
            if any(s.empty for s in open_sides):
                continue
            bound = min(s.max for s in open_sides) if open_sides else None
        lpart, lkeys = lside.take_below(bound)
        rpart, rkeys = rside.take_below(bound)
        if lpart.num_rows or rpart.num_rows:
            joined = _join_part(lpart, lkeys, rpart, rkeys, key, how, schema, stats)
            if joined.num_rows:
                yield joined
        if bound is None:
            return


def _distinct_sorted(keys: np.ndarray) -> np.ndarray:
    """The distinct values of an ascending array (no hashing or sorting: the database sorted it)."""
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys


def _join_part(
    lpart: pa.Table, lkeys: np.ndarray, rpart: pa.Table, rkeys: np.ndarray, key: str, how: str, schema, stats
) -> pa.Table:
    """Join one complete key range (every row of these keys is here, on both sides)."""
    stats.left_rows += lpart.num_rows
    stats.right_rows += rpart.num_rows
    lmatch = np.isin(lkeys, rkeys, assume_unique=False)
    rmatch = np.isin(rkeys, lkeys, assume_unique=False)
    lunmatched, runmatched = _distinct_sorted(lkeys[~lmatch]), _distinct_sorted(rkeys[~rmatch])
    stats.matched_keys += len(_distinct_sorted(lkeys[lmatch]))
    stats.unmatched_left_keys += len(lunmatched)
    stats.unmatched_right_keys += len(runmatched)
    for sample, found in ((stats.unmatched_left_sample, lunmatched), (stats.unmatched_right_sample, runmatched)):
        sample.extend(int(k) for k in found[: max(0, SAMPLE_KEYS - len(sample))])
    right_values = [c for c in rpart.column_names if c != key]
    if len(rkeys) < 2 or bool(np.all(rkeys[1:] > rkeys[:-1])):
        # Unique right keys: each left row meets at most one right row, found by binary search.
        pos = np.searchsorted(rkeys, lkeys).clip(max=max(len(rkeys) - 1, 0))
        keep = lmatch if how == "inner" else np.ones(len(lkeys), dtype=bool)
        left_rows = lpart.filter(pa.array(keep)) if how == "inner" else lpart
        if len(rkeys):
            indices = pa.array(pos[keep], mask=~lmatch[keep])
            right_rows = rpart.select(right_values).take(indices)
        else:
            right_rows = pa.table({c: pa.nulls(left_rows.num_rows, rpart.schema.field(c).type) for c in right_values})
        joined = pa.Table.from_arrays(left_rows.columns + right_rows.columns, schema=schema)
    else:
        # Repeated right keys: a hash join, then the deterministic order (key, left row, right row).
        lnum = lpart.append_column("__left_row", pa.array(np.arange(lpart.num_rows)))
        rnum = rpart.append_column("__right_row", pa.array(np.arange(rpart.num_rows)))
        joined = lnum.join(rnum, keys=key, join_type="inner" if how == "inner" else "left outer")
        joined = joined.sort_by([(key, "ascending"), ("__left_row", "ascending"), ("__right_row", "ascending")])
        joined = joined.select(schema.names).cast(schema)
    stats.joined_rows += joined.num_rows
    return joined
