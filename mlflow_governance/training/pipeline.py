"""scikit-learn Pipelines that take the raw feature columns, and their safe (skops) logging.

Preprocessing lives inside the pipeline, so the registered model scores raw rows: numeric
columns are imputed (median) and, for linear models, scaled; categorical columns are imputed
and one-hot encoded (linear, forest) or ordinal encoded for native categorical splits
(histogram gradient boosting). Unknown categories at scoring time are ignored / treated as
missing.

Models are saved with skops, never pickle. skops refuses to load types it does not know; the
types a pipeline needs are listed with ``skops.io.get_untrusted_types`` and declared as
``skops_trusted_types`` only when every one is a *class* from scikit-learn, NumPy or SciPy, or one
of the few functions named in `TRUSTED_FUNCTIONS` (what histogram gradient boosting stores).
Any other function is refused: a file could otherwise bind, say, ``numpy.savetxt`` into a
``FunctionTransformer`` and write files when it scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from mlflow_governance.training.data import CATEGORICAL_FEATURES, NUMERIC_FEATURES

TRUSTED_MODULE_ROOTS = ("sklearn", "numpy", "scipy")
# Callables, not classes, that scikit-learn's own estimators store (HistGradientBoosting keeps a
# partial of check_array). Every other function is refused, whatever its module.
TRUSTED_FUNCTIONS = frozenset({"functools.partial", "sklearn.utils.validation.check_array"})


def _is_class(dotted: str) -> bool:
    """True when ``dotted`` names a class in an importable module (resolved without calling it)."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return isinstance(obj, type)
    return False


def one_hot_preprocessor(
    numeric: Sequence[str] = NUMERIC_FEATURES, categorical: Sequence[str] = CATEGORICAL_FEATURES, scale: bool = True
) -> ColumnTransformer:
    """Median-impute (+ scale) numeric columns; impute and one-hot encode categorical columns."""
    num_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        num_steps.append(("scale", StandardScaler()))
    cat = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=5)),
        ]
    )
    return ColumnTransformer([("num", Pipeline(num_steps), list(numeric)), ("cat", cat, list(categorical))])


def ordinal_preprocessor(
    numeric: Sequence[str] = NUMERIC_FEATURES, categorical: Sequence[str] = CATEGORICAL_FEATURES
) -> ColumnTransformer:
    """Categorical columns first, as ordinal codes (unknown/missing -> NaN), then numeric as is."""
    enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)
    return ColumnTransformer([("cat", enc, list(categorical)), ("num", "passthrough", list(numeric))])


def build_pipeline(
    family: str,
    params: dict[str, Any],
    seed: int,
    numeric: Sequence[str] = NUMERIC_FEATURES,
    categorical: Sequence[str] = CATEGORICAL_FEATURES,
) -> Pipeline:
    """The Pipeline of one candidate ``family`` with hyper-parameters ``params``."""
    if family == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=2000, random_state=seed, **params)
        return Pipeline([("preprocess", one_hot_preprocessor(numeric, categorical)), ("classifier", clf)])
    if family == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        clf = RandomForestClassifier(random_state=seed, n_jobs=-1, **params)
        pre = one_hot_preprocessor(numeric, categorical, scale=False)
        return Pipeline([("preprocess", pre), ("classifier", clf)])
    if family == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        clf = HistGradientBoostingClassifier(
            categorical_features=list(range(len(categorical))), random_state=seed, **params
        )
        return Pipeline([("preprocess", ordinal_preprocessor(numeric, categorical)), ("classifier", clf)])
    raise ValueError(f"unknown estimator family {family!r}")


def refuse_untrusted(types: list[str], what: str) -> list[str]:
    """``types`` when all are trusted; ValueError naming the others.

    Trusted: classes from scikit-learn, NumPy or SciPy, and the functions in `TRUSTED_FUNCTIONS`.
    """
    refused = [
        t for t in types
        if t not in TRUSTED_FUNCTIONS and not (t.split(".")[0] in TRUSTED_MODULE_ROOTS and _is_class(t))
    ]
    if refused:
        raise ValueError(
            f"{what} references types that are not trusted for loading (only scikit-learn/NumPy/SciPy classes "
            f"and {', '.join(sorted(TRUSTED_FUNCTIONS))} are): {', '.join(sorted(refused))}"
        )
    return sorted(types)


def trusted_types(model: BaseEstimator) -> list[str]:
    """The skops types ``model`` needs, to declare as trusted; ValueError if one is not trustworthy."""
    import skops.io as sio

    try:
        needed = sio.get_untrusted_types(data=sio.dumps(model))
    except Exception as exc:  # noqa: BLE001 - skops raises many types for unsupported objects
        raise ValueError(f"{type(model).__name__} cannot be saved safely with skops: {exc}") from exc
    return refuse_untrusted(needed, type(model).__name__)
