"""The data profile: exact per-column statistics computed while the training set streams past.

`Profiler` sees every joined chunk once and keeps only running aggregates (counts, min/max,
central moments combined chunk by chunk, distinct values, small value counts), so profiling
needs no second pass and no full copy of the data. Means, standard deviations (ddof=1) and
skews (adjusted Fisher-Pearson, as ``pandas.Series.skew``) match pandas on the same data.

`write_html` renders the readable profile: a summary of the exact profile and the quality
verdict, followed by evidently's ``DataSummaryPreset`` report over an evenly spaced sample of
the Parquet file (at most ``HTML_SAMPLE_ROWS`` rows, read one row group at a time).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlflow_governance.safe.html import safe_report_html

HTML_SAMPLE_ROWS = 50_000
TOP_VALUES = 10
_MAX_COUNTED_VALUES = 100  # value counts are kept for columns with at most this many distinct values
_COMPACT_DISTINCT = 1 << 18


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """The distinct values of ``x``, sorted (a stable sort merges already sorted runs quickly)."""
    x = np.sort(x, kind="stable")
    return x[np.concatenate(([True], x[1:] != x[:-1]))] if len(x) else x


class _Column:
    def __init__(self, name: str, dtype: pa.DataType):
        self.name, self.dtype = name, dtype
        self.numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
        self.textual = pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
        self.count = self.nulls = 0
        self.n = 0
        self.mean = self.m2 = self.m3 = 0.0
        self.min: Any = None
        self.max: Any = None
        self.uniques: list[pa.Array] = []
        self.distinct_numbers: np.ndarray | None = None
        self.pending = 0
        self.counts: dict[Any, int] | None = {}

    def update(self, column: pa.ChunkedArray) -> None:
        values = column.drop_null()
        self.nulls += column.null_count
        self.count += len(values)
        if not len(values):
            return
        if self.numeric:
            # Hash first (most columns hold few distinct values), then sort only those.
            found = pc.unique(values)
            unique = _sorted_unique((found.combine_chunks() if isinstance(found, pa.ChunkedArray) else found).to_numpy())
            if self.distinct_numbers is not None:
                unique = _sorted_unique(np.concatenate([self.distinct_numbers, unique]))
            self.distinct_numbers = unique
        else:
            unique = pc.unique(values)
            self.uniques.append(unique.combine_chunks() if isinstance(unique, pa.ChunkedArray) else unique)
            self.pending += len(unique)
            if self.pending > _COMPACT_DISTINCT:
                self._compact()
        if self.numeric or self.textual:
            lo, hi = pc.min_max(values).values()
            self.min = lo.as_py() if self.min is None else min(self.min, lo.as_py())
            self.max = hi.as_py() if self.max is None else max(self.max, hi.as_py())
        if self.counts is not None and len(unique) > _MAX_COUNTED_VALUES:
            self.counts = None
        if self.counts is not None:
            for row in pc.value_counts(values).to_pylist():
                self.counts[row["values"]] = self.counts.get(row["values"], 0) + row["counts"]
            if len(self.counts) > _MAX_COUNTED_VALUES:
                self.counts = None
        if self.numeric:
            self._moments(values.to_numpy().astype(np.float64, copy=False))

    def _moments(self, x: np.ndarray) -> None:
        # Chan et al.'s pairwise update of mean and the 2nd/3rd central moment sums.
        nb = len(x)
        mb = float(x.mean())
        d = x - mb
        m2b, m3b = float((d * d).sum()), float((d * d * d).sum())
        na, n = self.n, self.n + nb
        delta = mb - self.mean
        m3 = (
            self.m3 + m3b + delta**3 * na * nb * (na - nb) / n**2 + 3 * delta * (na * m2b - nb * self.m2) / n
        )
        self.m2 = self.m2 + m2b + delta**2 * na * nb / n
        self.m3 = m3
        self.mean += delta * nb / n
        self.n = n

    def _compact(self) -> None:
        if len(self.uniques) > 1:
            self.uniques = [pc.unique(pa.concat_arrays(self.uniques))]
        self.pending = len(self.uniques[0]) if self.uniques else 0

    def result(self, rows: int) -> dict[str, Any]:
        self._compact()
        out: dict[str, Any] = {
            "type": str(self.dtype),
            "count": self.count,
            "nulls": self.nulls,
            "null_share": self.nulls / rows if rows else 0.0,
            "distinct": self.pending if self.distinct_numbers is None else len(self.distinct_numbers),
        }
        if self.numeric or self.textual:
            out["min"], out["max"] = self.min, self.max
        if self.numeric and self.n:
            n = self.n
            out["mean"] = self.mean
            out["std"] = math.sqrt(self.m2 / (n - 1)) if n > 1 else None
            if n > 2:
                out["skew"] = 0.0 if self.m2 == 0 else n * math.sqrt(n - 1) / (n - 2) * self.m3 / self.m2**1.5
            else:
                out["skew"] = None
        if self.counts is not None and self.counts:
            top = sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:TOP_VALUES]
            out["top"] = [{"value": v, "count": c} for v, c in top]
        return out


class Profiler:
    """Accumulates the profile of a stream of tables with one schema."""

    def __init__(self, schema: pa.Schema, label: str | None = None):
        self.schema = schema
        self.label = label
        self.rows = 0
        self.columns = {f.name: _Column(f.name, f.type) for f in schema}
        self.label_counts: dict[Any, int] = {}
        self.label_missing = 0

    def update(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for name, col in self.columns.items():
            col.update(table.column(name))
        if self.label in self.columns:
            column = table.column(self.label)
            self.label_missing += column.null_count
            for row in pc.value_counts(column.drop_null()).to_pylist():
                self.label_counts[row["values"]] = self.label_counts.get(row["values"], 0) + row["counts"]

    def result(self) -> dict[str, Any]:
        """The profile: rows, per-column statistics and the class balance of the label."""
        labelled = sum(self.label_counts.values())
        label: dict[str, Any] = {"column": self.label, "present": self.label in self.columns}
        if label["present"]:
            label.update(
                missing=self.label_missing,
                missing_share=self.label_missing / self.rows if self.rows else 0.0,
                counts={str(k): v for k, v in sorted(self.label_counts.items(), key=lambda kv: str(kv[0]))},
                shares={str(k): v / labelled for k, v in sorted(self.label_counts.items(), key=lambda kv: str(kv[0]))},
                minority_share=min(self.label_counts.values()) / labelled if len(self.label_counts) > 1 else 0.0,
            )
        return {
            "rows": self.rows,
            "columns": {name: col.result(self.rows) for name, col in self.columns.items()},
            "label": label,
        }


def sample_frame(path: str | Path, max_rows: int = HTML_SAMPLE_ROWS):
    """An evenly spaced sample of at most ``max_rows`` rows of a Parquet file, as pandas."""
    pf = pq.ParquetFile(path)
    total = pf.metadata.num_rows
    wanted = np.unique(np.linspace(0, total - 1, min(total, max_rows)).astype(np.int64)) if total else np.empty(0)
    parts, start = [], 0
    for i in range(pf.num_row_groups):
        size = pf.metadata.row_group(i).num_rows
        local = wanted[(wanted >= start) & (wanted < start + size)] - start
        if len(local):
            parts.append(pf.read_row_group(i).take(pa.array(local)))
        start += size
    table = pa.concat_tables(parts) if parts else pf.schema_arrow.empty_table()
    return table.to_pandas(ignore_metadata=True), total  # plain dtypes: evidently trips on pandas NA types


def evidently_html(frame, key: str | None, label: str | None) -> str:
    """evidently's data summary report of ``frame`` as a standalone HTML page, made safe against
    values that would end its data script early (`mlflow_governance.safe.html`)."""
    import tempfile

    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataSummaryPreset

    numeric = [c for c in frame.columns if c not in (key, label) and frame[c].dtype.kind in "iuf"]
    categorical = [c for c in frame.columns if c not in (key,) and c not in numeric]
    frame = frame.copy()
    for c in categorical:
        if frame[c].dtype.kind == "f":  # an integer label with missing values: labels 0/1, not 0.0/1.0
            values = [None if v != v else int(v) if float(v).is_integer() else v for v in frame[c].tolist()]
            frame[c] = pd.Series(values, index=frame.index, dtype=object)
    definition = DataDefinition(
        id_column=key if key in frame.columns else None,
        numerical_columns=numeric,
        categorical_columns=categorical,
    )
    snapshot = Report([DataSummaryPreset()]).run(Dataset.from_pandas(frame, data_definition=definition), None)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.html"
        snapshot.save_html(str(out))
        return safe_report_html(out.read_text(encoding="utf-8"))


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return str(value)


def summary_html(profile: dict[str, Any], quality: dict[str, Any]) -> str:
    """The exact profile and the verdict as an HTML fragment."""
    e = html.escape
    ok = quality.get("flag") == "acceptable"
    parts = [
        '<section id="mlgov-profile" style="font-family:sans-serif;margin:16px;padding:16px;'
        f'border:2px solid {"#2e7d32" if ok else "#c62828"};border-radius:8px">',
        f"<h1>Training data profile: {e(str(quality.get('flag')))}</h1>",
        f"<p>{_fmt(profile.get('rows'))} rows, {len(profile.get('columns', {}))} columns.</p>",
    ]
    for title, items in (("Reasons", quality.get("reasons", [])), ("Warnings", quality.get("warnings", []))):
        if items:
            parts.append(f"<h2>{title}</h2><ul>" + "".join(f"<li>{e(str(i))}</li>" for i in items) + "</ul>")
    parts.append("<h2>Quality rules</h2><table border=1 cellpadding=4 style='border-collapse:collapse'>")
    parts.append("<tr><th>rule</th><th>severity</th><th>result</th><th>detail</th></tr>")
    for r in quality.get("rules", []):
        verdict = "pass" if r["passed"] else ("FAIL" if r["severity"] == "error" else "warn")
        parts.append(
            f"<tr><td>{e(r['rule'])}</td><td>{e(r['severity'])}</td><td>{verdict}</td><td>{e(r['detail'])}</td></tr>"
        )
    parts.append("</table><h2>Columns (exact, all rows)</h2><table border=1 cellpadding=4 style='border-collapse:collapse'>")
    heads = ("column", "type", "nulls", "null share", "distinct", "min", "max", "mean", "std", "skew")
    parts.append("<tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>")
    for name, c in profile.get("columns", {}).items():
        cells = (name, c["type"], c["nulls"], f"{c['null_share']:.2%}", c["distinct"], c.get("min"), c.get("max"),
                 c.get("mean"), c.get("std"), c.get("skew"))
        parts.append("<tr>" + "".join(f"<td>{e(_fmt(v))}</td>" for v in cells) + "</tr>")
    parts.append("</table>")
    label = profile.get("label", {})
    if label.get("present"):
        balance = ", ".join(f"{k}: {v:,} ({label['shares'][k]:.1%})" for k, v in label["counts"].items())
        parts.append(
            f"<h2>Class balance of {e(str(label['column']))}</h2><p>{e(balance)}; "
            f"missing: {label['missing']:,} ({label['missing_share']:.2%})</p>"
        )
    join = profile.get("join")
    if join:
        parts.append("<h2>Join</h2><ul>" + "".join(f"<li>{e(k)}: {e(_fmt(v))}</li>" for k, v in join.items()) + "</ul>")
    sources = profile.get("sources")
    if sources:
        parts.append("<h2>Sources</h2><ul>")
        for role, s in sources.items():
            parts.append(
                f"<li>{e(role)}: {e(str(s.get('url')))} via {e(str(s.get('reader')))}, {_fmt(s.get('rows'))} rows "
                f"from {e(', '.join(s.get('tables', [])))}</li>"
            )
        parts.append("</ul>")
    parts.append("</section>")
    return "\n".join(parts)


CHART_TOP_CATEGORIES = 15
EVIDENTLY_PAGE = "profile_evidently.html"


def column_figures(frame, key: str | None = None) -> dict[str, Any]:
    """One small matplotlib figure per column of ``frame`` (the key column aside): a histogram for
    numbers, a horizontal bar chart of the most frequent values for categories, so long names
    (``DESTINATION_AIRPORT``, airport codes) stay readable instead of overlapping."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: dict[str, Any] = {}
    for name in frame.columns:
        if name == key:
            continue
        values = frame[name].dropna()
        fig, ax = plt.subplots(figsize=(4.2, 2.6))
        if values.dtype.kind in "iuf" and values.nunique() > 2:
            ax.hist(values.to_numpy(dtype="float64"), bins=30, color="#4a78b5")
            ax.set_ylabel("rows")
            ax.tick_params(axis="x", labelrotation=0)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        else:
            counts = values.astype(str).value_counts().head(CHART_TOP_CATEGORIES)[::-1]
            ax.barh(counts.index.tolist(), counts.to_numpy(), color="#4a78b5")
            ax.set_xlabel("rows")
            ax.tick_params(axis="y", labelsize=7)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
        ax.set_title(str(name), fontsize=9)
        fig.tight_layout()
        figures[str(name)] = fig
    return figures


def figure_png(fig, dpi: int = 72) -> str:
    """A figure as a PNG data URI (and closed)."""
    import base64
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def charts_html(frame, key: str | None, note: str) -> str:
    """The column charts as an HTML fragment (images embedded)."""
    e = html.escape
    parts = [f"<section id='mlgov-charts' style='font-family:sans-serif;margin:16px'><h2>Columns at a glance</h2>"
             f"<p>{e(note)}</p>"]
    for name, fig in column_figures(frame, key).items():
        parts.append(f"<img alt='{e(name)}' title='{e(name)}' src='{figure_png(fig)}' style='margin:4px'>")
    parts.append("</section>")
    return "\n".join(parts)


def write_html(
    parquet: str | Path,
    profile: dict[str, Any],
    quality: dict[str, Any],
    out: str | Path,
    *,
    key: str | None = None,
    label: str | None = None,
    sample_rows: int = HTML_SAMPLE_ROWS,
) -> dict[str, Any]:
    """Write the readable profile to ``out`` and evidently's full data summary beside it.

    ``out`` is one self-contained page well under a megabyte: the exact profile and verdict, and a
    small chart per column from an evenly spaced sample; it links to evidently's own report
    (`EVIDENTLY_PAGE`, which carries evidently's 3.5 MB script bundle). Returns how it was made.
    """
    out = Path(out)
    frame, total = sample_frame(parquet, sample_rows)
    sampled = (f"an evenly spaced sample of {len(frame):,} of {total:,} rows" if len(frame) < total
               else f"all {total:,} rows")
    info: dict[str, Any] = {"sample_rows": len(frame), "rows": total, "renderer": "evidently",
                            "evidently_page": EVIDENTLY_PAGE}
    try:
        full = evidently_html(frame, key, label)
        link = (f"<p style='font-family:sans-serif;margin:16px'>evidently's interactive data summary over {sampled}: "
                f"<a href='{EVIDENTLY_PAGE}'>{EVIDENTLY_PAGE}</a></p>")
        (out.parent / EVIDENTLY_PAGE).write_text(full, encoding="utf-8")
    except Exception as exc:  # evidently cannot render this frame: keep the exact summary and the charts
        info.update(renderer="summary only", evidently_page=None,
                    evidently_error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        link = f"<p style='font-family:sans-serif;margin:16px'>evidently could not render this data: " \
               f"{html.escape(info['evidently_error'])}</p>"
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Training data profile</title></head><body>\n"
        + summary_html(profile, quality) + "\n" + link + "\n"
        + charts_html(frame, key, f"Charts over {sampled}; exact figures are in the tables above.")
        + "\n</body></html>\n"
    )
    out.write_text(page, encoding="utf-8")
    return info
