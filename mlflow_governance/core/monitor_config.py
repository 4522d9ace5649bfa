"""The monitor configuration of a version: which monitors run, on what, against which bounds.

Parsed from a YAML or JSON file or a mapping into frozen dataclasses with every default filled
in. Its canonical JSON (sorted keys, compact) and that text's SHA-256 digest identify the rule
set behind any figure: the governance record stores both, and every evaluation carries the
digest. Shape::

    quality: {min_labels: 100, thresholds: {roc_auc: 0.8, accuracy: 0.7}}
    fairness: {threshold: 0.8, min_group_size: 100, favourable_prediction: 0,
               attributes: [{feature: ORIGIN_AIRPORT, monitored: [EWR], reference: [JFK]}]}
    drift: {features: [DEPARTURE_DELAY, ...], max_share_drifted: 0.25, min_rows: 2000,
            stattests: {DISTANCE: wasserstein}}
    estimated_accuracy: {max_drop: 0.05, min_rows: 100}

A section that is absent runs with its defaults; ``enabled: false`` turns a monitor off.
Quality thresholds given are merged over the default (``roc_auc: 0.8``); ``null`` makes a
metric informational. Anything wrong raises `MonitorConfigError` with one line naming the key.

This module imports neither evidently nor scikit-learn: the governance server parses
configurations with it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_governance.core.features import CATEGORICAL_FEATURES, FEATURES, INTEGER_FEATURES

PREFIX = "monitors config"
SECTIONS: tuple[str, ...] = ("quality", "fairness", "drift", "estimated_accuracy")
QUALITY_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc")
# Watson OpenScale's default quality threshold: area under the ROC curve 0.8.
DEFAULT_QUALITY_THRESHOLDS: dict[str, float] = {"roc_auc": 0.8}
# The calendar columns drift by construction between any two periods.
CALENDAR_FEATURES: tuple[str, ...] = ("MONTH", "DAY")
DEFAULT_DRIFT_FEATURES: tuple[str, ...] = tuple(f for f in FEATURES if f not in CALENDAR_FEATURES)
# evidently's distances are biased upwards on small samples: windows of 1,000 January/February
# flights against a January/February reference show DESTINATION_AIRPORT (about 100 airports)
# "drifted" 20 times in 20, windows of 300 breach one time in four, windows of 100 always;
# from 2,000 rows the same-distribution windows stop drifting (1 feature in 1 of 20 windows).
DEFAULT_DRIFT_MIN_ROWS = 2000
# evidently 0.7's registered drift tests and the column types each accepts ("num", "cat");
# tests/test_monitors.py checks this against evidently's registry (importing evidently takes
# seconds, too slow for the server to validate a configuration).
STATTESTS: dict[str, tuple[str, ...]] = {
    "TVD": ("cat",),
    "anderson": ("num",),
    "chisquare": ("cat",),
    "cramer_von_mises": ("num",),
    "ed": ("num",),
    "empirical_mmd": ("num",),
    "es": ("num",),
    "fisher_exact": ("cat",),
    "g_test": ("cat",),
    "hellinger": ("cat", "num"),
    "jensenshannon": ("cat", "num"),
    "kl_div": ("cat", "num"),
    "ks": ("num",),
    "mannw": ("num",),
    "psi": ("cat", "num"),
    "t_test": ("num",),
    "wasserstein": ("num",),
    "z": ("cat",),
}


class MonitorConfigError(ValueError):
    """A monitor configuration that cannot be used; the message names the bad key path."""


def _error(path: str, message: str) -> MonitorConfigError:
    text = f"{PREFIX}: {path}: {message}" if path else f"{PREFIX}: {message}"
    return MonitorConfigError(" ".join(text.split()))


def feature_type(feature: str) -> str:
    """``"cat"`` or ``"num"``, as evidently calls the column types."""
    return "cat" if feature in CATEGORICAL_FEATURES else "num"


@dataclass(frozen=True)
class QualityConfig:
    """Quality on labelled rows: lower bounds per metric, judged from ``min_labels`` labels."""

    enabled: bool = True
    min_labels: int = 100
    thresholds: tuple[tuple[str, float], ...] = tuple(sorted(DEFAULT_QUALITY_THRESHOLDS.items()))

    def threshold(self, metric: str) -> float | None:
        return dict(self.thresholds).get(metric)

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "min_labels": self.min_labels, "thresholds": dict(self.thresholds)}


@dataclass(frozen=True)
class FairnessAttribute:
    """Disparate impact on ``feature``: the ``monitored`` values' group over the ``reference`` values'."""

    feature: str
    monitored: tuple[Any, ...]
    reference: tuple[Any, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "monitored": list(self.monitored), "reference": list(self.reference)}


DEFAULT_ATTRIBUTES = (FairnessAttribute("ORIGIN_AIRPORT", ("EWR",), ("JFK",)),)


@dataclass(frozen=True)
class FairnessConfig:
    """Disparate impact per attribute (four-fifths rule), judged on groups of ``min_group_size`` rows."""

    enabled: bool = True
    threshold: float = 0.8
    min_group_size: int = 100
    favourable_prediction: int = 0
    attributes: tuple[FairnessAttribute, ...] = DEFAULT_ATTRIBUTES

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "threshold": self.threshold,
            "min_group_size": self.min_group_size,
            "favourable_prediction": self.favourable_prediction,
            "attributes": [a.to_dict() for a in self.attributes],
        }


@dataclass(frozen=True)
class DriftConfig:
    """Feature drift of ``features`` (evidently's tests); breach when more than
    ``max_share_drifted`` of them drift. ``stattests`` names a test per feature."""

    enabled: bool = True
    features: tuple[str, ...] = DEFAULT_DRIFT_FEATURES
    max_share_drifted: float = 0.25
    min_rows: int = DEFAULT_DRIFT_MIN_ROWS
    stattests: tuple[tuple[str, str], ...] = ()

    def stattest(self, feature: str) -> str | None:
        return dict(self.stattests).get(feature)

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "features": list(self.features),
            "max_share_drifted": self.max_share_drifted,
            "min_rows": self.min_rows,
            "stattests": dict(self.stattests),
        }


@dataclass(frozen=True)
class EstimatedAccuracyConfig:
    """Accuracy estimated by the drift detection model; breach when it drops more than ``max_drop``."""

    enabled: bool = True
    max_drop: float = 0.05
    min_rows: int = 100

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "max_drop": self.max_drop, "min_rows": self.min_rows}


@dataclass(frozen=True)
class MonitorConfig:
    """The four monitor sections, defaults filled in."""

    quality: QualityConfig = field(default_factory=QualityConfig)
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    estimated_accuracy: EstimatedAccuracyConfig = field(default_factory=EstimatedAccuracyConfig)

    def enabled(self) -> list[str]:
        """The names of the monitors that run, in a fixed order."""
        return [name for name in SECTIONS if getattr(self, name).enabled]

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


def default_config() -> MonitorConfig:
    """All four monitors with their defaults."""
    return MonitorConfig()


# ---- parsing ---------------------------------------------------------------------------------


def _mapping(value: Any, path: str, known: tuple[str, ...], what: str = "key") -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _error(path, f"must be a mapping, not {_kind(value)}")
    for key in value:
        if not isinstance(key, str) or key not in known:
            where = f"{path}.{key}" if path else str(key)
            raise _error(where, f"unknown {what} (known: {', '.join(known)})")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _error(path, f"must be true or false, not {_kind(value)}")
    return value


def _count(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _error(path, f"must be a whole number of at least 1, not {value!r}")
    return int(value)


def _unit(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _error(path, f"must be a number between 0 and 1, not {_kind(value)} {value!r}")
    if not 0.0 <= value <= 1.0:
        raise _error(path, f"must be between 0 and 1, not {value!r}")
    return float(value)


def _feature(value: Any, path: str) -> str:
    if not isinstance(value, str) or value not in FEATURES:
        raise _error(path, f"{value!r} is not a model feature (features: {', '.join(FEATURES)})")
    return value


def _quality(raw: Any) -> QualityConfig:
    m = _mapping(raw, "quality", ("enabled", "min_labels", "thresholds"))
    default = QualityConfig()
    thresholds = dict(DEFAULT_QUALITY_THRESHOLDS)
    given = _mapping(m.get("thresholds"), "quality.thresholds", QUALITY_METRICS, "metric") if "thresholds" in m else {}
    for metric, value in given.items():
        if value is None:
            thresholds.pop(metric, None)
        else:
            thresholds[metric] = _unit(value, f"quality.thresholds.{metric}")
    return QualityConfig(
        enabled=_bool(m.get("enabled", True), "quality.enabled"),
        min_labels=_count(m.get("min_labels", default.min_labels), "quality.min_labels"),
        thresholds=tuple(sorted(thresholds.items())),
    )


def _group(value: Any, path: str, feature: str) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise _error(path, "must be a non-empty list of values")
    out: list[Any] = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if feature in CATEGORICAL_FEATURES:
            if not isinstance(item, str) or not item:
                hint = " (quote it: YAML reads a bare NO or ON as a boolean)" if isinstance(item, bool) else ""
                raise _error(where, f"must be a {feature} value as a string, not {_kind(item)} {item!r}{hint}")
        else:
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
                raise _error(where, f"must be a number ({feature} is numeric), not {_kind(item)} {item!r}")
            if feature in INTEGER_FEATURES:
                if item != int(item):
                    raise _error(where, f"must be a whole number ({feature} is an integer column), not {item!r}")
                item = int(item)
            else:
                item = float(item)
        if item in out:
            raise _error(where, f"{item!r} is listed twice")
        out.append(item)
    return tuple(sorted(out))


def _attribute(raw: Any, path: str) -> FairnessAttribute:
    m = _mapping(raw, path, ("feature", "monitored", "reference"))
    for key in ("feature", "monitored", "reference"):
        if key not in m:
            raise _error(f"{path}.{key}", "is required")
    feature = _feature(m["feature"], f"{path}.feature")
    monitored = _group(m["monitored"], f"{path}.monitored", feature)
    reference = _group(m["reference"], f"{path}.reference", feature)
    both = sorted(set(monitored) & set(reference), key=str)
    if both:
        raise _error(f"{path}.reference", f"{', '.join(map(str, both))} is also in the monitored group")
    return FairnessAttribute(feature, monitored, reference)


def _fairness(raw: Any) -> FairnessConfig:
    m = _mapping(raw, "fairness", ("enabled", "threshold", "min_group_size", "favourable_prediction", "attributes"))
    default = FairnessConfig()
    favourable = m.get("favourable_prediction", default.favourable_prediction)
    if isinstance(favourable, bool) or favourable not in (0, 1):
        raise _error("fairness.favourable_prediction", f"must be 0 or 1 (a predicted DELAYED value), not {favourable!r}")
    attributes = default.attributes
    if "attributes" in m:
        raw_attributes = m["attributes"]
        if not isinstance(raw_attributes, list) or not raw_attributes:
            raise _error("fairness.attributes", "must be a non-empty list of {feature, monitored, reference}")
        attributes = tuple(_attribute(a, f"fairness.attributes[{i}]") for i, a in enumerate(raw_attributes))
        seen: dict[str, int] = {}
        for i, a in enumerate(attributes):
            if a.feature in seen:
                raise _error(
                    f"fairness.attributes[{i}].feature",
                    f"{a.feature} is already monitored by fairness.attributes[{seen[a.feature]}] (one attribute per feature)",
                )
            seen[a.feature] = i
    return FairnessConfig(
        enabled=_bool(m.get("enabled", True), "fairness.enabled"),
        threshold=_unit(m.get("threshold", default.threshold), "fairness.threshold"),
        min_group_size=_count(m.get("min_group_size", default.min_group_size), "fairness.min_group_size"),
        favourable_prediction=int(favourable),
        attributes=attributes,
    )


def _drift(raw: Any) -> DriftConfig:
    m = _mapping(raw, "drift", ("enabled", "features", "max_share_drifted", "min_rows", "stattests"))
    default = DriftConfig()
    features = default.features
    if "features" in m:
        raw_features = m["features"]
        if not isinstance(raw_features, list) or not raw_features:
            raise _error("drift.features", "must be a non-empty list of features")
        chosen = []
        for i, f in enumerate(raw_features):
            name = _feature(f, f"drift.features[{i}]")
            if name in chosen:
                raise _error(f"drift.features[{i}]", f"{name} is listed twice")
            chosen.append(name)
        features = tuple(f for f in FEATURES if f in chosen)
    stattests: dict[str, str] = {}
    for feature, test in _mapping(m.get("stattests"), "drift.stattests", FEATURES, "feature").items():
        path = f"drift.stattests.{feature}"
        if feature not in features:
            raise _error(path, f"{feature} is not one of the drift features ({', '.join(features)})")
        if not isinstance(test, str) or test not in STATTESTS:
            raise _error(path, f"unknown drift test {test!r} (known: {', '.join(sorted(STATTESTS))})")
        if feature_type(feature) not in STATTESTS[test]:
            kind = "categorical" if feature_type(feature) == "cat" else "numerical"
            raise _error(path, f"{test} does not apply to {kind} columns like {feature}")
        stattests[feature] = test
    return DriftConfig(
        enabled=_bool(m.get("enabled", True), "drift.enabled"),
        features=features,
        max_share_drifted=_unit(m.get("max_share_drifted", default.max_share_drifted), "drift.max_share_drifted"),
        min_rows=_count(m.get("min_rows", default.min_rows), "drift.min_rows"),
        stattests=tuple(sorted(stattests.items())),
    )


def _estimated_accuracy(raw: Any) -> EstimatedAccuracyConfig:
    m = _mapping(raw, "estimated_accuracy", ("enabled", "max_drop", "min_rows"))
    default = EstimatedAccuracyConfig()
    return EstimatedAccuracyConfig(
        enabled=_bool(m.get("enabled", True), "estimated_accuracy.enabled"),
        max_drop=_unit(m.get("max_drop", default.max_drop), "estimated_accuracy.max_drop"),
        min_rows=_count(m.get("min_rows", default.min_rows), "estimated_accuracy.min_rows"),
    )


def parse_config(mapping: Mapping[str, Any] | MonitorConfig | None) -> MonitorConfig:
    """The `MonitorConfig` of a mapping (as read from YAML/JSON); MonitorConfigError naming the bad key."""
    if isinstance(mapping, MonitorConfig):
        return mapping
    if not isinstance(mapping, Mapping):
        raise _error("", f"must be a mapping of monitor sections ({', '.join(SECTIONS)}), not {_kind(mapping)}")
    m = _mapping(mapping, "", SECTIONS, "section")
    return MonitorConfig(
        quality=_quality(m.get("quality")),
        fairness=_fairness(m.get("fairness")),
        drift=_drift(m.get("drift")),
        estimated_accuracy=_estimated_accuracy(m.get("estimated_accuracy")),
    )


def recorded_config(status_version: Mapping[str, Any]) -> MonitorConfig | None:
    """The configuration recorded on a version (its ``monitors`` entry in the governance status),
    or None when none is recorded yet."""
    text = (status_version.get("monitors") or {}).get("config")
    return parse_config(json.loads(text)) if text else None


def config_in_force(status_version: Mapping[str, Any]) -> tuple[MonitorConfig, bool]:
    """(the configuration that governs a version, whether it is recorded on it): the recorded
    one, else the defaults. Validation, the production monitor and `mlgov monitors show` agree."""
    recorded = recorded_config(status_version)
    return (recorded, True) if recorded is not None else (default_config(), False)


def load_config(path: str | Path) -> MonitorConfig:
    """Read and parse a YAML or JSON monitor configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _error("", f"{str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _error("", f"cannot read {str(p)!r}: {exc}") from None
    try:
        data = _load_text(text, json_only=p.suffix.lower() == ".json")
    except ValueError as exc:
        raise _error("", f"{str(p)!r} is not YAML or JSON: {exc}") from None
    if data is None:
        raise _error("", f"{str(p)!r} is empty")
    try:
        return parse_config(data)
    except MonitorConfigError as exc:
        raise MonitorConfigError(str(exc).replace(f"{PREFIX}: ", f"{PREFIX}: {p.name}: ", 1)) from None


def _load_text(text: str, json_only: bool) -> Any:
    if json_only:
        return json.loads(text)
    try:
        import yaml
    except ImportError:  # PyYAML comes with MLflow; without it only JSON is read
        return json.loads(text)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None

