"""Why the delay model predicted what it did: per raw feature contributions (SHAP) and a contrastive
answer (the smallest change of one actionable feature that flips the prediction).

What is explained: the model's output as `scoring.score` gives it, P(DELAYED) (``predict_proba``'s
column 1, the positive class "delayed"), decided "delayed" at `scoring.DECISION_THRESHOLD`. Every
contribution belongs to a raw input column of the model's signature (``MONTH`` ...
``DESTINATION_AIRPORT``), never to a one-hot or ordinal column the pipeline makes of it. The base
value is the mean output over the background rows, and base value + contributions = output: the
additivity check compares that sum with the model's own ``predict_proba`` on the row and reports
the difference as ``additivity_error`` (within `ADDITIVITY_TOLERANCE` for both methods below,
which compute exact values: there is no sampling tolerance to state, unless more than
`EXACT_MAX_FEATURES` features vary, see below).

Background: a seeded sample of `BACKGROUND_ROWS` rows of the version's reference sample (the
training rows development logged beside the training data statistics, the monitors' reference).
The values are interventional Shapley values with respect to it: a feature "absent" from a
coalition takes the background rows' values.

Two methods, chosen per model (`Explainer.method`), both with SHAP:

* ``tree``: ``shap.TreeExplainer`` (interventional, ``model_output="probability"``) on the
  pipeline's fitted tree ensemble, given the background as the pipeline's preprocessing turns it
  into model columns; the contributions of the model columns made from one raw column (the one-hot
  columns of a category) are summed into that raw column (additive, exact for the trees). For a
  pipeline of one ColumnTransformer whose every output column comes from one raw column, followed
  by a tree ensemble SHAP's tree reader takes (random forests, extra trees, gradient boosting,
  histogram gradient boosting without native categorical splits), and only if a self-check on
  background rows is additive. 0.1-0.15 s a row for the random forests of the full search.
* ``kernel`` (model-agnostic), for every other model: the trained pipeline (histogram gradient
  boosting with native categorical splits, which SHAP's tree reader does not know: it reads the
  numeric threshold of a categorical split and misses the category bitset, so its values are wrong;
  on a trained pipeline they summed to 0.011 against an output of 0.049), logistic regression, and
  imported outside models, whatever they are. ``shap.KernelExplainer`` on the whole pipeline as a
  function of the raw columns: the categorical columns are handed to SHAP as integer codes (missing:
  -1) and decoded back to their strings before the pipeline sees a row. Every coalition of the
  varying features is enumerated (``nsamples`` covers all 2^M - 2 of them, ``l1_reg=False``), so the
  kernel regression has an exact solution: the exact Shapley values, no sampling (they agree with
  ``shap.explainers.Exact`` to 1e-16). One explanation is one ``predict`` of (2^M - 2) x 100
  rows, 51,000 for nine features: on one core of this machine 0.36-0.51 s for the histogram
  gradient boosting pipelines of the full search (200-300 iterations), about 0.15 s for the quick
  search's (100), 0.07 s for logistic regression. Why not shap's Exact or
  Permutation explainer, which give the same values: their numba kernels are compiled at a
  process's first explanation, 8-9 s on this machine for every sidecar worker and every
  ``mlgov explain``; the kernel explainer has none to compile.

  More than `EXACT_MAX_FEATURES` varying features (our models take nine) would need too many
  coalitions: the kernel explainer then samples ``2**EXACT_MAX_FEATURES`` of them, shap's default
  budget. Additivity still holds to floating point (the kernel regression is constrained to it),
  so the additivity tolerance stays the same, but the values are estimates with no stated bound:
  the explanation says ``exact: false``.

Counterfactual (`Explainer.counterfactuals`): for one row, the smallest change of one of
`ACTIONABLE_FEATURES` that flips the predicted class, searched within the training range: every
value the reference shows for that feature (for a numeric feature with many values, a grid of
`GRID_POINTS` quantiles between its observed minimum and maximum). Actionable means a traveller
or the airline could choose it for the same trip: the scheduled departure hour, and the carrier
among those the reference shows flying the same route (origin and destination). Not actionable:
the date (MONTH, DAY, and DAY_OF_WEEK, which changes only with the date), the route and its
DISTANCE, and DEPARTURE_DELAY, which is what happened, not a choice. "Smallest": a numeric change
costs its size over the feature's observed range, a categorical change costs 1; among flips of
equal cost the one furthest past the threshold wins. All candidate rows of a request are scored in
one ``predict``. When no single change flips it, the counterfactual is None with the reason.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlflow_governance.scoring.decision import DECISION_THRESHOLD, score

BACKGROUND_ROWS = 100
BACKGROUND_SEED = 42
ADDITIVITY_TOLERANCE = 1e-6
EXACT_MAX_FEATURES = 11  # at most 2,046 coalitions x 100 background rows per explanation
GRID_POINTS = 101
OUTPUT = "P(DELAYED): predict_proba of the positive class (delayed)"
#: Actionable feature -> the features whose values its candidates must share in the reference
#: (a carrier is only proposed if the reference shows it flying the same route).
ACTIONABLE_FEATURES: dict[str, tuple[str, ...]] = {
    "SCHEDULED_HOUR": (),
    "CARRIER": ("ORIGIN_AIRPORT", "DESTINATION_AIRPORT"),
}
TREE = "tree"
KERNEL = "kernel"


class ExplanationUnavailable(Exception):
    """The version cannot be explained (no reference sample recorded, SHAP missing, ...)."""


@dataclass(frozen=True)
class Explanation:
    """One row's explanation: contributions per raw column that sum with the base value to the output."""

    base_value: float
    contributions: dict[str, float]
    output: float
    prediction: int
    additivity_error: float
    method: str
    exact: bool
    counterfactual: dict[str, Any] | None = None
    counterfactual_reason: str | None = None

    @property
    def additive(self) -> bool:
        return self.additivity_error <= ADDITIVITY_TOLERANCE

    def ranked(self) -> list[tuple[str, float]]:
        """The contributions, largest magnitude first."""
        return sorted(self.contributions.items(), key=lambda kv: (-abs(kv[1]), kv[0]))

    def to_dict(self) -> dict[str, Any]:
        return {"base_value": self.base_value, "contributions": dict(self.contributions), "output": self.output,
                "prediction": self.prediction, "additivity_error": self.additivity_error, "method": self.method,
                "exact": self.exact, "counterfactual": self.counterfactual,
                "counterfactual_reason": self.counterfactual_reason}


def _plain(value: Any) -> Any:
    """A JSON-ready scalar (NaN and None as None)."""
    if value is None:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(float(value)))


# --- categorical columns as codes for the model-agnostic explainer --------------------------------


class _Codec:
    """Frames of the model's columns <-> float arrays SHAP can mask: numbers as they are, each
    text/object column as the index of its value in a category list (missing: -1). Categories met
    later (in a row to explain) are appended, so earlier codes stay valid."""

    def __init__(self, frame: pd.DataFrame):
        self.columns = list(frame.columns)
        self.kinds = {c: frame[c].dtype.kind for c in self.columns}
        self.categories: dict[str, list[Any]] = {}
        self._index: dict[str, dict[Any, int]] = {}
        for c in self.columns:
            if self.kinds[c] not in "iufb":
                self.categories[c], self._index[c] = [], {}
        self.encode(frame)

    def _codes(self, column: str, values: np.ndarray) -> np.ndarray:
        index, categories = self._index[column], self.categories[column]
        out = np.empty(len(values), dtype="float64")
        for i, v in enumerate(values):
            if _missing(v):
                out[i] = -1.0
                continue
            code = index.get(v)
            if code is None:
                code = index[v] = len(categories)
                categories.append(v)
            out[i] = code
        return out

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.columns)), dtype="float64")
        for j, c in enumerate(self.columns):
            values = frame[c].to_numpy()
            out[:, j] = self._codes(c, values) if c in self.categories else values.astype("float64")
        return out

    def decode(self, array: np.ndarray) -> pd.DataFrame:
        columns: dict[str, Any] = {}
        for j, c in enumerate(self.columns):
            col = array[:, j]
            kind = self.kinds[c]
            if c in self.categories:
                lookup = np.empty(len(self.categories[c]) + 1, dtype=object)
                lookup[:-1] = self.categories[c]
                lookup[-1] = np.nan
                codes = col.astype("int64")
                codes[codes < 0] = len(self.categories[c])
                columns[c] = lookup[codes]
            elif kind in "iu" and not np.isnan(col).any():
                columns[c] = np.rint(col).astype("int64")
            elif kind == "b":
                columns[c] = col > 0.5
            else:
                columns[c] = col
        return pd.DataFrame(columns, copy=False)


# --- which raw column each model column of a pipeline comes from -----------------------------------


def _origins(step: Any, names: list[str]) -> list[str] | None:
    """The raw column of each output column of a fitted transformer given columns ``names`` (None
    when that cannot be told for sure)."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    if isinstance(step, str):
        return list(names) if step == "passthrough" else ([] if step == "drop" else None)
    if isinstance(step, Pipeline):
        current: list[str] | None = list(names)
        for _, sub in step.steps:
            if current is None:
                return None
            current = _origins(sub, current)
        return current
    if isinstance(step, OneHotEncoder):
        widths = getattr(step, "_n_features_outs", None)
        if widths is None or len(widths) != len(names):
            return None
        return [n for n, w in zip(names, widths, strict=True) for _ in range(int(w))]
    try:  # an elementwise transformer (imputer, scaler, ordinal encoder) names the columns it keeps
        out = [str(n) for n in step.get_feature_names_out(np.asarray(names, dtype=object))]
    except Exception:  # noqa: BLE001 - a transformer that cannot name its outputs: not mapped
        return None
    return out if all(n in names for n in out) else None


def _column_origins(preprocess: Any, columns: list[str]) -> list[str] | None:
    """The raw column of every output column of a fitted ColumnTransformer (None when unknown)."""
    from sklearn.compose import ColumnTransformer

    if not isinstance(preprocess, ColumnTransformer) or not hasattr(preprocess, "output_indices_"):
        return None
    fitted_names = list(getattr(preprocess, "feature_names_in_", columns))
    width = max((s.stop for s in preprocess.output_indices_.values()), default=0)
    origins: list[str | None] = [None] * width
    for name, step, cols in preprocess.transformers_:
        where = preprocess.output_indices_.get(name)
        if where is None or where.stop == where.start:
            continue
        if isinstance(cols, str):
            cols = [cols]
        try:
            names = [c if isinstance(c, str) else fitted_names[int(c)] for c in np.asarray(cols, dtype=object)] \
                if not isinstance(cols, slice) else fitted_names[cols]
        except (IndexError, TypeError, ValueError):
            return None
        found = _origins(step, [str(n) for n in names])
        if found is None or len(found) != where.stop - where.start:
            return None
        origins[where.start:where.stop] = found
    if any(o is None or o not in columns for o in origins):
        return None
    return [str(o) for o in origins]


def _tree_model(estimator: Any) -> bool:
    """A tree ensemble whose structure SHAP's tree explainer reads correctly."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

    if isinstance(estimator, HistGradientBoostingClassifier):
        categorical = getattr(estimator, "is_categorical_", None)
        return categorical is None or not bool(np.any(categorical))  # categorical splits: not read by SHAP
    return isinstance(estimator, (RandomForestClassifier, ExtraTreesClassifier, GradientBoostingClassifier,
                                  DecisionTreeClassifier, ExtraTreeClassifier))


def _dense(matrix: Any) -> np.ndarray:
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    return np.asarray(matrix, dtype="float64")


# --- the explainer ---------------------------------------------------------------------------------


@dataclass
class _Range:
    """Where an actionable feature's counterfactual values are searched (from the reference)."""

    numeric: bool
    values: list[Any] = field(default_factory=list)  # numeric: the grid; categorical: every value seen
    low: float = 0.0
    high: float = 0.0
    by_condition: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)


class Explainer:
    """Explains one model's predictions against a background from its reference (see the module).

    ``reference``: the version's reference sample (the model's raw columns, typed as scored); the
    background is `BACKGROUND_ROWS` of it, seeded, and the counterfactual ranges come from all of
    it. Not thread-safe: one explanation at a time per instance.
    """

    def __init__(self, model: Any, reference: pd.DataFrame, columns: Sequence[str] | None = None,
                 background_rows: int = BACKGROUND_ROWS, seed: int = BACKGROUND_SEED,
                 actionable: dict[str, tuple[str, ...]] | None = None):
        try:
            with warnings.catch_warnings():  # shap's plotting colours use matplotlib calls it deprecates
                warnings.simplefilter("ignore", PendingDeprecationWarning)
                import shap
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise ExplanationUnavailable("SHAP is not installed (pip install shap)") from exc
        self._shap = shap
        self.model = model
        self.columns = list(columns if columns is not None else reference.columns)
        missing = [c for c in self.columns if c not in reference.columns]
        if missing:
            raise ExplanationUnavailable(f"the reference sample lacks the model's column(s) {', '.join(missing)}")
        reference = reference[self.columns].reset_index(drop=True)
        if reference.empty:
            raise ExplanationUnavailable("the reference sample has no rows")
        self.reference = reference
        self.background = reference.sample(background_rows, random_state=seed).reset_index(drop=True) \
            if len(reference) > background_rows else reference
        self.actionable = {f: tuple(c for c in cond if c in self.columns)
                           for f, cond in (ACTIONABLE_FEATURES if actionable is None else actionable).items()
                           if f in self.columns}
        self._ranges = {f: self._range(f, cond) for f, cond in self.actionable.items()}
        self.method = KERNEL
        self._tree: tuple[Any, Any, list[str], Any] | None = None
        self._kernel: Any = None
        self._codec: _Codec | None = None
        if not self._try_tree():
            self._codec = _Codec(self.background)
            self._kernel = shap.KernelExplainer(self._predict_codes, self._codec.encode(self.background),
                                                link="identity")
        self.base_value = self._base_value()

    # --- building --------------------------------------------------------------------------

    def _positive(self, frame: pd.DataFrame) -> np.ndarray:
        return score(self.model, frame)[1]

    def _predict_codes(self, array: np.ndarray) -> np.ndarray:
        assert self._codec is not None
        return self._positive(self._codec.decode(np.asarray(array, dtype="float64")))

    def _try_tree(self) -> bool:
        from sklearn.pipeline import Pipeline

        model = self.model
        if not isinstance(model, Pipeline) or len(model.steps) != 2 or not _tree_model(model.steps[-1][1]):
            return False
        preprocess, estimator = model.steps[0][1], model.steps[-1][1]
        origins = _column_origins(preprocess, self.columns)
        if origins is None:
            return False
        try:
            explainer = self._shap.TreeExplainer(estimator, data=_dense(preprocess.transform(self.background)),
                                                 feature_perturbation="interventional",
                                                 model_output="probability")
            self._tree = (preprocess, estimator, origins, explainer)
            self.method = TREE
            check = self.background.head(3)
            values, base = self._tree_values(check)
            error = np.abs(base + values.sum(axis=1) - self._positive(check)).max()
        except Exception:  # noqa: BLE001 - any model SHAP's tree reader does not take: model-agnostic
            error = math.inf
        if not error <= ADDITIVITY_TOLERANCE:
            self._tree, self.method = None, KERNEL
            return False
        return True

    def _base_value(self) -> float:
        if self._tree is not None:
            return float(self._tree_base())
        return float(np.asarray(self._kernel.expected_value).reshape(-1)[0])

    def _tree_base(self) -> float:
        assert self._tree is not None
        expected = np.asarray(self._tree[3].expected_value, dtype="float64").reshape(-1)
        return float(expected[1] if len(expected) > 1 else expected[0])

    def _range(self, feature: str, condition: tuple[str, ...]) -> _Range:
        values = self.reference[feature]
        present = values[values.notna()]
        if values.dtype.kind in "iuf":
            if present.empty:
                return _Range(True)
            distinct = np.unique(present.to_numpy())
            if len(distinct) > GRID_POINTS:
                distinct = np.unique(np.quantile(present.to_numpy(dtype="float64"), np.linspace(0, 1, GRID_POINTS)))
                if values.dtype.kind in "iu":
                    distinct = np.unique(np.rint(distinct).astype("int64"))
            return _Range(True, [_plain(v) for v in distinct], float(distinct.min()), float(distinct.max()))
        seen = sorted({v for v in present}, key=str)
        by_condition: dict[tuple[Any, ...], list[Any]] = {}
        if condition:
            frame = self.reference[[*condition, feature]].dropna()
            for key, group in frame.groupby(list(condition), sort=False):
                key = key if isinstance(key, tuple) else (key,)
                by_condition[tuple(key)] = sorted(set(group[feature]), key=str)
        return _Range(False, seen, by_condition=by_condition)

    # --- explaining ------------------------------------------------------------------------

    def _tree_values(self, frame: pd.DataFrame) -> tuple[np.ndarray, float]:
        assert self._tree is not None
        preprocess, _, origins, explainer = self._tree
        raw = np.asarray(explainer.shap_values(_dense(preprocess.transform(frame)), check_additivity=False),
                         dtype="float64")
        if raw.ndim == 3:
            raw = raw[:, :, 1]
        values = np.zeros((len(frame), len(self.columns)))
        position = {c: j for j, c in enumerate(self.columns)}
        for k, origin in enumerate(origins):
            values[:, position[origin]] += raw[:, k]
        return values, self._tree_base()

    def _kernel_values(self, frame: pd.DataFrame) -> tuple[np.ndarray, list[bool]]:
        assert self._codec is not None
        codes = self._codec.encode(frame)
        values = np.zeros((len(frame), len(self.columns)))
        exact = []
        for i in range(len(frame)):
            row = codes[i:i + 1]
            varying = len(self._kernel.varying_groups(row))
            out = self._kernel.shap_values(row, nsamples=2 ** EXACT_MAX_FEATURES, l1_reg=False, silent=True)
            values[i] = np.asarray(out, dtype="float64").reshape(-1)[: len(self.columns)]
            exact.append(varying <= EXACT_MAX_FEATURES)
        return values, exact

    def contributions(self, frame: pd.DataFrame) -> tuple[np.ndarray, float, list[bool]]:
        """(contributions per row and raw column, base value, whether each is exact)."""
        frame = frame[self.columns]
        if self._tree is not None:
            values, base = self._tree_values(frame)
            return values, base, [True] * len(frame)
        values, exact = self._kernel_values(frame)
        return values, self.base_value, exact

    def explain(self, frame: pd.DataFrame, counterfactuals: bool = True) -> list[Explanation]:
        """One `Explanation` per row of ``frame`` (the model's raw columns)."""
        frame = frame[self.columns].reset_index(drop=True)
        prediction, output = score(self.model, frame)
        values, base, exact = self.contributions(frame)
        found = self.counterfactuals(frame, prediction) if counterfactuals else [(None, None)] * len(frame)
        out = []
        for i in range(len(frame)):
            total = base + float(values[i].sum())
            out.append(Explanation(
                base_value=float(base),
                contributions={c: float(values[i, j]) for j, c in enumerate(self.columns)},
                output=float(output[i]), prediction=int(prediction[i]),
                additivity_error=float(abs(total - float(output[i]))), method=self.method, exact=bool(exact[i]),
                counterfactual=found[i][0], counterfactual_reason=found[i][1]))
        return out

    # --- the contrastive answer ------------------------------------------------------------

    def _candidates(self, row: pd.Series, feature: str) -> list[Any]:
        where = self._ranges[feature]
        current = row[feature]
        if where.numeric:
            return [v for v in where.values if _missing(current) or v != current]
        condition = self.actionable[feature]
        pool = where.values
        if condition:
            key = tuple(row[c] for c in condition)
            pool = [] if any(_missing(k) for k in key) else where.by_condition.get(key, [])
        return [v for v in pool if _missing(current) or v != current]

    def _cost(self, feature: str, current: Any, value: Any) -> float:
        where = self._ranges[feature]
        if not where.numeric or _missing(current):
            return 1.0
        span = where.high - where.low
        return abs(float(value) - float(current)) / span if span > 0 else 1.0

    def counterfactuals(self, frame: pd.DataFrame, prediction: np.ndarray | None = None,
                        threshold: float = DECISION_THRESHOLD) -> list[tuple[dict[str, Any] | None, str | None]]:
        """Per row: (the smallest single actionable change that flips its prediction, None) or
        (None, why there is none). Every candidate row is scored in one ``predict``."""
        frame = frame[self.columns].reset_index(drop=True)
        if prediction is None:
            prediction = score(self.model, frame)[0]
        names = list(self.actionable)
        if not names:
            reason = ("the model takes none of the actionable features "
                      f"({', '.join(ACTIONABLE_FEATURES)}): no counterfactual is searched")
            return [(None, reason)] * len(frame)
        plan: list[tuple[int, str, Any]] = []
        for i in range(len(frame)):
            row = frame.iloc[i]
            for f in names:
                plan.extend((i, f, v) for v in self._candidates(row, f))
        probabilities = np.empty(0)
        if plan:
            candidates = frame.iloc[[i for i, _, _ in plan]].reset_index(drop=True)
            for f in names:
                picks = [k for k, (_, g, _) in enumerate(plan) if g == f]
                if picks:
                    column = candidates[f].to_numpy(copy=True)
                    values = np.asarray([plan[k][2] for k in picks], dtype=column.dtype)
                    column[picks] = values
                    candidates[f] = column
            probabilities = score(self.model, candidates)[1]
        best: dict[int, tuple[tuple[float, float, int], dict[str, Any]]] = {}
        for k, (i, f, v) in enumerate(plan):
            p = float(probabilities[k])
            flipped = int(p >= threshold)
            if flipped == int(prediction[i]):
                continue
            current = frame.iloc[i][f]
            rank = (self._cost(f, current, v), -abs(p - threshold), k)
            if i not in best or rank < best[i][0]:
                numeric = self._ranges[f].numeric and not _missing(current)
                best[i] = (rank, {"feature": f, "from": _plain(current), "to": _plain(v),
                                  "change": _plain(float(v) - float(current)) if numeric else None,
                                  "probability": p, "prediction": flipped})
        shown = " or ".join(names)
        reason = (f"no single change of {shown} (the actionable features) within the training range flips "
                  "the prediction")
        return [(best[i][1], None) if i in best else (None, reason) for i in range(len(frame))]


def explain(model: Any, features: pd.DataFrame, background: pd.DataFrame) -> list[Explanation]:
    """The explanations of ``model`` on the rows of ``features`` against ``background`` (the
    version's reference sample, or any frame of the same columns; sampled to `BACKGROUND_ROWS`)."""
    return Explainer(model, background, columns=list(features.columns)).explain(features)


def load_reference(model: str, version: int, fields: dict[str, str]) -> pd.DataFrame:
    """The reference sample development recorded on ``version`` (raw columns, typed as scored);
    `ExplanationUnavailable` when it has none or it cannot be read."""
    from mlflow_governance.scoring.inputs import read_reference
    from mlflow_governance.training.data import feature_frame

    with tempfile.TemporaryDirectory(prefix="mlgov-explain-") as tmp:
        try:
            _, frame = read_reference(model, int(version), fields, tmp)
            return feature_frame(frame)
        except (ValueError, KeyError) as exc:
            raise ExplanationUnavailable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


def for_version(model_name: str, version: int, estimator: Any, columns: Sequence[str],
                fields: dict[str, str]) -> Explainer:
    """The explainer of a loaded version, against the reference recorded on it."""
    return Explainer(estimator, load_reference(model_name, version, fields), columns=list(columns))
