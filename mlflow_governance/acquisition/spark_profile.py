"""The profile and the join counts with Spark aggregations (the Spark engine's `profile.Profiler`).

Everything is computed by Spark on the executors; only aggregates reach the driver (one row of
per-column statistics, at most ``_MAX_COUNTED_VALUES`` value counts per low-cardinality column,
at most ``SAMPLE_KEYS`` unmatched keys per side). The result has exactly the shape and content
of `profile.Profiler.result` and of the streaming join's counts, so the quality rules
(`quality.evaluate`), the HTML page and the governance record cannot tell the engines apart:
counts, distinct counts, minima, maxima and value counts are equal; means, standard deviations
(ddof=1) and skews (adjusted Fisher-Pearson, Spark's population skewness rescaled) agree to
floating-point rounding.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from mlflow_governance.acquisition.join import SAMPLE_KEYS, JoinStats
from mlflow_governance.acquisition.profile import _MAX_COUNTED_VALUES, TOP_VALUES


def _col(name: str):
    from pyspark.sql import functions as F

    return F.col(f"`{name}`")


def _python_value(text: str, dtype: pa.DataType) -> Any:
    """A value counted as Spark text, back as the Python value the streaming profile holds."""
    if pa.types.is_integer(dtype):
        return int(text)
    if pa.types.is_floating(dtype):
        return float(text)
    if pa.types.is_boolean(dtype):
        return text == "true"
    return text


def profile(df, schema: pa.Schema, label: str | None = None) -> dict[str, Any]:
    """The profile of the Spark DataFrame ``df`` (columns as in ``schema``), as `Profiler.result`."""
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)).alias("rows")]
    kinds = {}
    for i, field in enumerate(schema):
        c = _col(field.name)
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
        textual = pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
        kinds[field.name] = (numeric, textual)
        aggs.append(F.count(c).alias(f"count_{i}"))
        if numeric or textual:
            aggs += [F.min(c).alias(f"min_{i}"), F.max(c).alias(f"max_{i}")]
        if numeric:
            x = c.cast("double")
            aggs += [F.avg(x).alias(f"mean_{i}"), F.stddev_samp(x).alias(f"std_{i}"), F.skewness(x).alias(f"skew_{i}")]
    stats = df.agg(*aggs).first().asDict()
    rows = int(stats["rows"])

    # Distinct values and value counts of every column in one shuffle: (column, value) pairs counted,
    # then counted again per column. Values are compared as Spark's text of them (exact for integers,
    # text and booleans; for doubles Java's shortest round-trip text, one per value).
    distinct_of: dict[str, int] = {f.name: 0 for f in schema}
    counts: dict[str, dict[Any, int]] = {}
    if rows:
        parts = [df.select(F.lit(i).alias("column"), _col(f.name).cast("string").alias("value"))
                 .where(F.col("value").isNotNull()) for i, f in enumerate(schema)]
        pairs = parts[0]
        for part in parts[1:]:
            pairs = pairs.unionByName(part)
        values = pairs.groupBy("column", "value").count().persist()
        try:
            for row in values.groupBy("column").count().collect():
                distinct_of[schema[row["column"]].name] = int(row["count"])
            counted = [i for i, f in enumerate(schema) if distinct_of[f.name] <= _MAX_COUNTED_VALUES or f.name == label]
            counts = {schema[i].name: {} for i in counted}
            if counted:
                for row in values.where(F.col("column").isin(counted)).collect():
                    field = schema[row["column"]]
                    counts[field.name][_python_value(row["value"], field.type)] = int(row["count"])
        finally:
            values.unpersist()

    columns: dict[str, Any] = {}
    for i, field in enumerate(schema):
        numeric, textual = kinds[field.name]
        count = int(stats[f"count_{i}"])
        nulls = rows - count
        distinct = distinct_of[field.name]
        out: dict[str, Any] = {
            "type": str(field.type),
            "count": count,
            "nulls": nulls,
            "null_share": nulls / rows if rows else 0.0,
            "distinct": distinct,
        }
        if numeric or textual:
            out["min"], out["max"] = stats[f"min_{i}"], stats[f"max_{i}"]
        if numeric and count:
            std, skew = stats[f"std_{i}"], stats[f"skew_{i}"]
            out["mean"] = float(stats[f"mean_{i}"])
            out["std"] = float(std) if count > 1 and std is not None else None
            if count > 2:
                # Spark's skewness is the population g1; pandas (and the streaming profile) report G1.
                out["skew"] = 0.0 if not std or skew is None else float(skew) * math.sqrt(count * (count - 1)) / (count - 2)
            else:
                out["skew"] = None
        if distinct <= _MAX_COUNTED_VALUES and counts.get(field.name):
            top = sorted(counts[field.name].items(), key=lambda kv: (-kv[1], str(kv[0])))[:TOP_VALUES]
            out["top"] = [{"value": v, "count": c} for v, c in top]
        columns[field.name] = out

    present = label in columns
    result_label: dict[str, Any] = {"column": label, "present": present}
    if present:
        label_counts = counts[label]
        labelled = sum(label_counts.values())
        missing = columns[label]["nulls"]
        ordered = sorted(label_counts.items(), key=lambda kv: str(kv[0]))
        result_label.update(
            missing=missing,
            missing_share=missing / rows if rows else 0.0,
            counts={str(k): v for k, v in ordered},
            shares={str(k): v / labelled for k, v in ordered},
            minority_share=min(label_counts.values()) / labelled if len(label_counts) > 1 else 0.0,
        )
    return {"rows": rows, "columns": columns, "label": result_label}


def join_stats(left, right, key: str, how: str) -> JoinStats:
    """The streaming join's counts (`JoinStats`) from the two sides' key counts, joined in Spark."""
    from pyspark.sql import functions as F

    lk = left.groupBy(_col(key)).agg(F.count(F.lit(1)).alias("__l"))
    rk = right.groupBy(_col(key)).agg(F.count(F.lit(1)).alias("__r"))
    keys = lk.join(rk, key, "full_outer")
    both = F.col("__l").isNotNull() & F.col("__r").isNotNull()

    def total(expr):
        return F.coalesce(F.sum(expr), F.lit(0))

    row = keys.agg(
        total(F.col("__l")).alias("left_rows"),
        total(F.col("__r")).alias("right_rows"),
        total(F.when(both, 1)).alias("matched"),
        total(F.when(F.col("__r").isNull(), 1)).alias("unmatched_left"),
        total(F.when(F.col("__l").isNull(), 1)).alias("unmatched_right"),
        total(F.when(both, F.col("__l") * F.col("__r"))).alias("inner_rows"),
        total(F.when(F.col("__r").isNull(), F.col("__l"))).alias("left_only_rows"),
    ).first()
    stats = JoinStats(
        left_rows=int(row["left_rows"]),
        right_rows=int(row["right_rows"]),
        joined_rows=int(row["inner_rows"]) + (int(row["left_only_rows"]) if how == "left" else 0),
        matched_keys=int(row["matched"]),
        unmatched_left_keys=int(row["unmatched_left"]),
        unmatched_right_keys=int(row["unmatched_right"]),
    )
    for count, side, sample in ((stats.unmatched_left_keys, "__r", stats.unmatched_left_sample),
                                (stats.unmatched_right_keys, "__l", stats.unmatched_right_sample)):
        if count:
            smallest = keys.where(F.col(side).isNull()).select(_col(key)).orderBy(_col(key)).limit(SAMPLE_KEYS)
            sample.extend(int(r[0]) for r in smallest.collect())
    return stats
