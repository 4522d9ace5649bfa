"""Feature drift monitor: evidently's data drift tests on the monitored features.

Each monitored feature of the window is compared with the version's reference sample by the
test evidently would choose (or the one the configuration names), with evidently's threshold;
``drift.share_drifted`` is the share of monitored features that drifted, and the monitor
breaches when it exceeds ``max_share_drifted`` (default 0.25: more than a quarter of the
features, i.e. 2 of the default 7). evidently's own default of half the columns would miss a
drift confined to the two or three features that matter. The calendar columns MONTH and DAY
are not monitored by default: they differ by construction between any two periods. A window of
fewer than ``min_rows`` rows (default 2,000) is INSUFFICIENT: the distances are biased upwards
on small samples, so small windows of undrifted traffic would read as drift.

evidently's choice for a reference of more than 1,000 rows is the normed Wasserstein distance
(numerical column with more than 5 values) or the Jensen-Shannon distance (categorical, or
numerical with at most 5 values), threshold 0.1 each. Those two are computed here directly
with scipy, the way evidently computes them, on reference state prepared once (cleaned values,
standard deviation, category counts): evidently's Report costs seconds on 100,000 rows, mostly
for plots a monitor does not need, and importing evidently alone takes seconds.
tests/test_monitors.py checks that the figures equal evidently's on the same data. Any other
test (a configured one, or the small-reference tests ks / chisquare / z) runs evidently's own
stattest function. `DriftMonitor.evidently_html` renders evidently's own drift report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlflow_governance.core.monitor_config import DriftConfig, feature_type
from mlflow_governance.monitoring.base import (
    BREACH,
    INFO,
    INSUFFICIENT,
    Figure,
    Reference,
    Result,
    Window,
    fmt_pair,
    judge,
    number,
    reference_sample,
    require_columns,
)
from mlflow_governance.safe.html import safe_report_html

NAME = "drift"
# evidently's two tests for a reference of more than SMALL_REFERENCE rows, with their default
# thresholds and display names (checked against evidently's registry by the tests).
WASSERSTEIN, JENSEN_SHANNON = "wasserstein", "jensenshannon"
FAST_TESTS: dict[str, tuple[float, str]] = {
    WASSERSTEIN: (0.1, "Wasserstein distance (normed)"),
    JENSEN_SHANNON: (0.1, "Jensen-Shannon distance"),
}
SMALL_REFERENCE = 1000
FEW_VALUES = 5  # a numerical column with at most this many values is tested like a categorical one
JS_BINS_FROM = 20  # Jensen-Shannon on a numerical column with more reference values bins it (sturges)


@dataclass
class _FeatureReference:
    """Reference-side state of one feature, computed once."""

    feature: str
    kind: str  # "num" | "cat"
    stattest: str | None  # configured test, or None for evidently's choice
    series: pd.Series  # cleaned reference values (NaN / inf dropped), as evidently tests them
    values: np.ndarray | None = None  # numerical: float values
    std_norm: float = 0.0  # numerical: max(std, 0.001), the Wasserstein norm
    counts: dict[Any, int] | None = None  # value -> count (categorical, or numerical with few values)
    nunique: int = 0

    @property
    def rows(self) -> int:
        return len(self.series)


def _clean(column: pd.Series, kind: str) -> pd.Series:
    if kind == "num":
        column = pd.to_numeric(column)
        if not pd.api.types.is_numeric_dtype(column):
            raise ValueError(f"{NAME}: column {column.name} should contain numerical values only")
        values = column.to_numpy(dtype="float64", na_value=np.nan)
        return column[np.isfinite(values)]
    return column.dropna()


def _prepare_feature(feature: str, column: pd.Series, stattest: str | None) -> _FeatureReference:
    kind = feature_type(feature)
    series = _clean(column, kind)
    if series.empty:
        raise ValueError(f"{NAME}: the reference has no value of {feature}")
    ref = _FeatureReference(feature, kind, stattest, series, nunique=int(series.nunique()))
    if kind == "num":
        ref.values = series.to_numpy(dtype="float64")
        ref.std_norm = max(float(np.std(series)), 0.001)
    if kind == "cat" or ref.nunique <= JS_BINS_FROM:
        ref.counts = {k: int(v) for k, v in series.value_counts().items()}
    return ref


class DriftMonitor:
    """Per-feature drift tests against a reference sample prepared once."""

    name = NAME

    def __init__(self, config: DriftConfig, reference_features: pd.DataFrame) -> None:
        self.config = config
        features = list(config.features)
        require_columns(reference_features, features, f"{NAME} reference")
        self.reference_features = reference_sample(reference_features)[features]
        self._refs = {
            f: _prepare_feature(f, self.reference_features[f], config.stattest(f)) for f in features
        }
        self._reference_dataset = None
        if any(self._needs_evidently(r) for r in self._refs.values()):
            _evidently_stattests()  # import evidently once, at prepare, not in the first evaluation

    @classmethod
    def prepare(cls, config: DriftConfig, reference: Reference) -> DriftMonitor:
        return cls(config, reference.features)

    @staticmethod
    def _needs_evidently(ref: _FeatureReference) -> bool:
        if ref.stattest is not None:
            return ref.stattest not in FAST_TESTS
        return ref.rows <= SMALL_REFERENCE

    def evaluate(self, window: Window) -> Result:
        features = list(self.config.features)
        require_columns(window.features, features, NAME)
        n, needed = len(window), self.config.min_rows
        share_key = f"{NAME}.share_drifted"
        threshold = self.config.max_share_drifted
        if n < needed:
            figures = (Figure(share_key, None, threshold, "<=", INSUFFICIENT),) + tuple(
                Figure(f"{NAME}.{f}.score", None, None, "", INFO) for f in features
            )
            details = {"rows": n, "min_rows": needed, "features": []}
            return Result(NAME, INSUFFICIENT, f"not enough rows: {n} of the {needed} needed", figures, details)
        rows = [self._test(self._refs[f], window.features[f]) for f in features]
        drifted = [r["feature"] for r in rows if r["drifted"]]
        share = len(drifted) / len(features)
        verdict = judge(share, threshold, "<=")
        value, bound = fmt_pair(share, threshold)
        names = f" ({', '.join(drifted)})" if drifted else ""
        relation = "above" if verdict == BREACH else "within"
        reason = f"{len(drifted)} of {len(features)} features drifted{names}: share {value} is {relation} {bound}"
        figures = (Figure(share_key, share, threshold, "<=", verdict),) + tuple(
            Figure(f"{NAME}.{r['feature']}.score", r["score"], r["threshold"], "", INFO) for r in rows
        )
        details = {
            "rows": n,
            "reference_rows": len(self.reference_features),
            "min_rows": needed,
            "drifted": len(drifted),
            "monitored": len(features),
            "max_share_drifted": threshold,
            "features": rows,
        }
        return Result(NAME, verdict, reason, figures, details)

    def _test(self, ref: _FeatureReference, column: pd.Series) -> dict[str, Any]:
        current = _clean(column, ref.kind)
        row: dict[str, Any] = {"feature": ref.feature, "column_type": "numerical" if ref.kind == "num" else "categorical"}
        if current.empty:
            # evidently refuses an empty column; a feature that is missing in every row has drifted
            row.update(stattest=None, stattest_name="no value in the window", score=None, threshold=None, drifted=True)
            return row
        name = ref.stattest or self._default_test(ref, current)
        if name in FAST_TESTS:
            threshold, display = FAST_TESTS[name]
            score = _wasserstein(ref, current) if name == WASSERSTEIN else _jensen_shannon(ref, current)
            drifted = bool(score >= threshold)
        else:
            name, display, score, threshold, drifted = _evidently_test(ref, current, name)
        row.update(stattest=name, stattest_name=display, score=number(score), threshold=number(threshold),
                   drifted=bool(drifted))
        return row

    @staticmethod
    def _default_test(ref: _FeatureReference, current: pd.Series) -> str | None:
        """evidently's choice (``_get_default_stattest``) for a reference of more than 1,000 rows;
        None (evidently chooses) for a smaller one."""
        if ref.rows <= SMALL_REFERENCE:
            return None
        if ref.kind == "cat":
            return JENSEN_SHANNON
        if ref.nunique > FEW_VALUES:
            return WASSERSTEIN
        union = np.union1d(ref.values, current.to_numpy(dtype="float64"))
        return JENSEN_SHANNON if len(union) <= FEW_VALUES else WASSERSTEIN

    # ---- evidently's own report ---------------------------------------------------------------

    def _definition(self):
        from evidently import DataDefinition

        features = list(self.config.features)
        return DataDefinition(
            numerical_columns=[f for f in features if feature_type(f) == "num"],
            categorical_columns=[f for f in features if feature_type(f) == "cat"],
        )

    def evidently_snapshot(self, window: Window):
        """evidently's DataDriftPreset on the monitored features, this configuration's tests and share."""
        from evidently import Dataset, Report
        from evidently.presets import DataDriftPreset

        features = list(self.config.features)
        require_columns(window.features, features, NAME)
        if self._reference_dataset is None:  # built once, on first use
            self._reference_dataset = Dataset.from_pandas(self.reference_features, data_definition=self._definition())
        current = Dataset.from_pandas(window.features[features], data_definition=self._definition())
        preset = DataDriftPreset(
            columns=features,
            drift_share=self.config.max_share_drifted,
            per_column_method=dict(self.config.stattests) or None,
        )
        return Report([preset]).run(current, self._reference_dataset)

    def evidently_html(self, window: Window) -> str:
        """evidently's own HTML drift report of ``window`` against the reference (self-contained page),
        made safe against scored values that would end its data script early
        (`mlflow_governance.safe.html`)."""
        return safe_report_html(self.evidently_snapshot(window).get_html_str(as_iframe=False))


def _wasserstein(ref: _FeatureReference, current: pd.Series) -> float:
    """evidently's ``_wasserstein_distance_norm``: Wasserstein distance over the reference std."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(ref.values, current.to_numpy(dtype="float64")) / ref.std_norm)


def _jensen_shannon(ref: _FeatureReference, current: pd.Series) -> float:
    """evidently's ``_jensenshannon``: JS distance of the value shares (or of sturges bins for a
    numerical column with more than 20 reference values)."""
    from scipy.spatial import distance

    if ref.kind == "num" and ref.nunique > JS_BINS_FROM:
        cur = current.to_numpy(dtype="float64")
        bins = np.histogram_bin_edges(np.concatenate([ref.values, cur]), bins="sturges")
        p = np.histogram(ref.values, bins)[0] / len(ref.values)
        q = np.histogram(cur, bins)[0] / len(cur)
    else:
        ref_counts = ref.counts or {}
        cur_counts = current.value_counts()
        keys = list(ref_counts.keys() | set(cur_counts.index))
        cur_map = dict(cur_counts.items())
        p = np.array([ref_counts.get(k, 0) for k in keys], dtype="float64") / ref.rows
        q = np.array([cur_map.get(k, 0) for k in keys], dtype="float64") / len(current)
    return float(distance.jensenshannon(p, q))


def _evidently_stattests():
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    return get_stattest, ColumnType


def _evidently_test(ref: _FeatureReference, current: pd.Series, name: str | None):
    """Run evidently's own stattest (its choice when ``name`` is None) on the cleaned columns."""
    get_stattest, column_type = _evidently_stattests()
    kind = column_type.Numerical if ref.kind == "num" else column_type.Categorical
    test = get_stattest(ref.series, current, kind, name)
    result = test(ref.series, current, kind, None)
    return test.name, test.display_name, float(result.drift_score), float(result.actual_threshold), result.drifted
