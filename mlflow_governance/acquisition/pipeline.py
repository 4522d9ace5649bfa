"""The acquisition: two sources, one streaming join, one profiled Parquet file, written atomically.

Both sources are checked before anything is read (`readers.resolve`). The join streams into a
temporary file next to the output; the profile is computed from the same chunks. Only a
complete, non-empty join is moved into place (`mlflow_governance.safe.outputs.install`): an
unreachable database, a missing table or column, an empty source or a join that matches nothing
leaves no output file. The output follows the rule of every mlgov ``--output``
(`mlflow_governance.safe.outputs.check_output_path`), checked before anything is read: never a
directory or a special file, a directory that accepts a new file (missing parents are created),
and an existing file replaced only with ``force`` (the library default is ``force=True``: the
commands pass their ``--force``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlflow_governance.acquisition import readers
from mlflow_governance.acquisition.errors import AcquisitionError
from mlflow_governance.acquisition.join import HOWS, JoinSpec, JoinStats, merge_join, output_schema
from mlflow_governance.acquisition.profile import Profiler
from mlflow_governance.airline import flights
from mlflow_governance.safe import outputs

ROW_GROUP_ROWS = 131_072
PROVENANCE_KEY = "mlgov.acquisition"  # Parquet key-value metadata: sources, readers, join counts


def use_system_allocator() -> None:
    """Let Arrow allocate with the system allocator in this process (the entry points call this).

    Arrow's default mimalloc pool keeps the pages of freed chunks, so a streaming process's
    resident memory creeps up with the data size; the system allocator returns them. An explicit
    ``ARROW_DEFAULT_MEMORY_POOL`` setting is left alone.
    """
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())


@dataclass
class AcquisitionResult:
    """What an acquisition produced."""

    output: Path
    rows: int
    profile: dict[str, Any]
    seconds: float
    readers: dict[str, str] = field(default_factory=dict)

    @property
    def join(self) -> dict[str, Any]:
        return self.profile["join"]

    @property
    def sources(self) -> dict[str, Any]:
        return self.profile["sources"]


def source_specs(flights_url: str, airports_url: str, spec: JoinSpec) -> tuple[readers.SourceSpec, readers.SourceSpec]:
    """The two sides of ``spec``: default columns are the seeded tables' columns."""
    return (
        readers.SourceSpec("flights", flights_url, spec.flights_table, tuple(spec.flight_columns or flights.FLIGHT_COLUMNS),
                           spec.key),
        readers.SourceSpec("airports", airports_url, spec.airports_table,
                           tuple(spec.airport_columns or flights.AIRPORT_COLUMNS), spec.key),
    )


def check_output(output: str | Path, force: bool = True) -> Path:
    """The resolved output path, refused (`AcquisitionError`) by the rule of `outputs.check_output_path`."""
    if not str(output).strip():
        raise AcquisitionError("the output path is empty")
    out = Path(output).expanduser().resolve()  # the file written: a symbolic link's target
    try:
        outputs.check_output_path(out, force, make_parents=True)
    except ValueError as exc:
        raise AcquisitionError(str(exc)) from None
    return out


def _check_arguments(
    months: Sequence[int], output: str | Path | None, spec: JoinSpec, chunk_rows: int, force: bool = True
) -> tuple[list[int], Path | None]:
    """Validated, de-duplicated months and the resolved output path (``None``: not checked)."""
    months = sorted({int(m) for m in months})  # a month named twice is read once
    for m in months:
        flights.month_name(m)
    if not months:
        raise AcquisitionError("no months selected")
    if spec.how not in HOWS:
        raise AcquisitionError(f"join type must be one of {', '.join(HOWS)}, not {spec.how!r}")
    if chunk_rows < 1:
        raise AcquisitionError(f"chunk rows must be positive, not {chunk_rows}")
    return months, (check_output(output, force) if output is not None else None)


@contextmanager
def _opened_sources(
    flights_url: str, airports_url: str, months: Sequence[int], spec: JoinSpec, reader: str
) -> Iterator[tuple[readers.Source, readers.Source, dict[str, str]]]:
    """Both sources resolved and checked (tables, columns, key types, reader paths); engines disposed after."""
    left_spec, right_spec = source_specs(flights_url, airports_url, spec)
    left = readers.resolve(left_spec, months)
    try:
        right = readers.resolve(right_spec, months)
        try:
            output_schema(left.schema, right.schema, spec.key)
            yield left, right, {"flights": readers.choose_path(left, reader), "airports": readers.choose_path(right, reader)}
        finally:
            right.engine.dispose()
    finally:
        left.engine.dispose()


def check_sources(
    flights_url: str,
    airports_url: str,
    months: Sequence[int],
    output: str | Path | None,
    spec: JoinSpec | None = None,
    *,
    reader: str = "auto",
    chunk_rows: int = readers.DEFAULT_CHUNK_ROWS,
    force: bool = True,
) -> None:
    """Everything `acquire` checks before reading a row (arguments, output path, connections,
    tables, columns, types, reader paths), so a caller can refuse bad input before it logs or
    writes anything. ``output=None``: no output path to check (the caller writes to a temporary one)."""
    spec = spec or JoinSpec()
    months, _ = _check_arguments(months, output, spec, chunk_rows, force)
    with _opened_sources(flights_url, airports_url, months, spec, reader):
        pass


def acquire(
    flights_url: str,
    airports_url: str,
    months: Sequence[int],
    output: str | Path,
    spec: JoinSpec | None = None,
    *,
    reader: str = "auto",
    chunk_rows: int = readers.DEFAULT_CHUNK_ROWS,
    label: str = flights.LABEL,
    force: bool = True,
) -> AcquisitionResult:
    """Join the flights and airports of ``months`` into the Parquet file ``output`` and profile it.

    An existing ``output`` file is replaced only with ``force`` (a directory or a special file never).
    """
    spec = spec or JoinSpec()
    if output is None:
        raise AcquisitionError("an output path is required")
    months, out = _check_arguments(months, output, spec, chunk_rows, force)
    with _opened_sources(flights_url, airports_url, months, spec, reader) as (left, right, paths):
        while True:
            try:
                return _run(left, right, paths, out, spec, months, chunk_rows, label, force)
            except readers.ArrowTypeInferenceError as exc:
                # The SQLite driver infers types from the first batch; re-read that side through SQLAlchemy.
                side = left if exc.role == "flights" else right
                if reader == "arrow" or paths[exc.role].startswith("sqlalchemy"):
                    raise
                paths[exc.role] = f"sqlalchemy-{side.engine.url.get_backend_name()}"
                side.notes.append(f"fell back from ADBC to SQLAlchemy: {exc}")


@contextmanager
def parquet_output(out: Path, schema: pa.Schema, force: bool) -> Iterator[pq.ParquetWriter]:
    """A Parquet writer for the acquired file ``out`` (text columns dictionary-encoded).

    It writes a temporary file beside ``out``, installed at ``out`` once the block ends and the
    writer is closed (never replacing a file without ``force``, `outputs.install`); on any failure
    the temporary file is removed and ``out`` is left as it was. Both engines write through it.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AcquisitionError(f"cannot write {out}: cannot create directory {out.parent} ({exc.strerror or exc})") from None
    tmp = outputs.temporary_path(out)
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    try:
        try:
            parquet = pq.ParquetWriter(tmp, schema, use_dictionary=text)
        except OSError as exc:
            raise AcquisitionError(f"cannot write {out}: cannot create {tmp.name} in {out.parent} ({exc})") from None
        with parquet as writer:
            yield writer
        try:
            outputs.install(tmp, out, force)
        except ValueError as exc:
            raise AcquisitionError(str(exc)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _run(
    left, right, paths, out: Path, spec: JoinSpec, months, chunk_rows: int, label: str, force: bool
) -> AcquisitionResult:
    schema = output_schema(left.schema, right.schema, spec.key)
    stats = JoinStats()
    profiler = Profiler(schema, label=label)
    # Each side reads in its own thread, a bounded number of chunks ahead; a third thread profiles
    # and writes one row group while the join builds the next.
    left_batches = readers.prefetch(readers.stream(left, paths["flights"], chunk_rows), name="flights-reader")
    right_batches = readers.prefetch(readers.stream(right, paths["airports"], chunk_rows), name="airports-reader")
    started = time.perf_counter()
    try:
        with parquet_output(out, schema, force) as writer, ThreadPoolExecutor(1, "parquet-writer") as sink:
            def write(table: pa.Table) -> None:
                profiler.update(table)
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)

            in_flight: Future | None = None
            pending: list[pa.Table] = []
            pending_rows = 0
            joined = merge_join(left_batches, right_batches, left.schema, right.schema, spec.key, spec.how, stats)
            for part in joined:
                pending.append(part)
                pending_rows += part.num_rows
                if pending_rows >= ROW_GROUP_ROWS:
                    if in_flight is not None:
                        in_flight.result()
                    in_flight = sink.submit(write, pa.concat_tables(pending))
                    pending, pending_rows = [], 0
            if in_flight is not None:
                in_flight.result()
            if pending:
                write(pa.concat_tables(pending))
            _check(left, right, stats, spec.key, months)
            # The file says where it came from: sources (masked URLs), reader paths, join counts.
            provenance = {"months": list(months), "join_spec": spec.describe(), "join": _join_info(spec, stats),
                          "sources": {"flights": left.describe(), "airports": right.describe()}}
            writer.add_key_value_metadata({PROVENANCE_KEY: json.dumps(provenance, default=str)})
    finally:
        left_batches.close()
        right_batches.close()
    seconds = time.perf_counter() - started
    profile = profiler.result()
    profile["key"] = spec.key
    profile["months"] = list(months)
    profile["join"] = _join_info(spec, stats)
    profile["sources"] = {"flights": left.describe(), "airports": right.describe()}
    profile["join_spec"] = spec.describe()
    return AcquisitionResult(out, stats.joined_rows, profile, seconds, dict(paths))


def _join_info(spec: JoinSpec, stats: JoinStats) -> dict[str, Any]:
    return {
        "key": spec.key,
        "how": spec.how,
        "flight_rows": stats.left_rows,
        "airport_rows": stats.right_rows,
        "joined_rows": stats.joined_rows,
        "matched_keys": stats.matched_keys,
        "unmatched_flight_keys": stats.unmatched_left_keys,
        "unmatched_airport_keys": stats.unmatched_right_keys,
        "unmatched_flight_sample": stats.unmatched_left_sample,
        "unmatched_airport_sample": stats.unmatched_right_sample,
        "max_buffered_rows": stats.max_buffered_rows,
    }


def _check(left, right, stats: JoinStats, key: str, months) -> None:
    for side, rows in ((left, stats.left_rows), (right, stats.right_rows)):
        if rows == 0:
            raise AcquisitionError(
                f"the {side.role} source returned no rows for months {','.join(map(str, months))} "
                f"(tables {', '.join(side.tables)}, filter: {side.month_filter}); nothing was written"
            )
    if stats.matched_keys == 0:
        raise AcquisitionError(
            f"the join on {key} matched nothing: none of the {stats.unmatched_left_keys:,} flight keys "
            f"(e.g. {stats.unmatched_left_sample[:5]}) is among the {stats.unmatched_right_keys:,} airport keys "
            f"(e.g. {stats.unmatched_right_sample[:5]}); nothing was written"
        )
