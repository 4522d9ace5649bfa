"""scikit-learn Pipelines that take the raw feature columns, and their safe (skops) logging.

Preprocessing lives inside the pipeline, so the registered model scores raw rows: numeric
columns are imputed (median) and, for linear models, scaled; categorical columns are imputed
and one-hot encoded (linear, forest) or ordinal encoded for native categorical splits
(histogram gradient boosting). Unknown categories at scoring time are ignored / treated as
missing.

Models are saved with skops, never pickle. skops refuses to load types it does not know; the
types a pipeline needs are listed with ``skops.io.get_untrusted_types`` and declared as
``skops_trusted_types`` only when every one is in the model-loading allowlist of
`mlflow_governance.safe.model_files` (the project's one loading policy, which `trusted_types` applies).
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

from mlflow_governance.core.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from mlflow_governance.safe.model_files import skops_types_for


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


def trusted_types(model: BaseEstimator) -> list[str]:
    """The skops types ``model`` needs, to declare as trusted; ValueError if one is not allowlisted."""
    return skops_types_for(model)
