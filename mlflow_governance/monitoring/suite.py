"""The four monitors together: prepare them once from a version's reference, evaluate windows.

`build_monitors` turns a `MonitorConfig` and a `Reference` into the enabled monitors, sampling
the reference once (at most 10,000 rows) and precomputing what each monitor needs from it.
`evaluate` runs them on one window and combines the results into an `Evaluation`: BREACH if any
monitor breached, else PASS. A monitor that could not judge the window (INSUFFICIENT) neither
passes nor fails it; the evaluation's reason names it. Every evaluation carries the digest of
the configuration it was judged by.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mlflow_governance.core.monitor_config import MonitorConfig
from mlflow_governance.monitoring.base import (
    BREACH,
    INSUFFICIENT,
    PASS,
    Figure,
    Monitor,
    Reference,
    Result,
    Window,
    reference_sample,
)


@dataclass(frozen=True)
class Evaluation:
    """The results of all monitors on one window, under the configuration ``digest``."""

    verdict: str
    results: tuple[Result, ...]
    digest: str

    @property
    def reason(self) -> str:
        """One sentence: what breached, what passed, what could not be judged."""
        if not self.results:
            return "no monitor is enabled"
        by = {v: [r for r in self.results if r.verdict == v] for v in (BREACH, PASS, INSUFFICIENT)}
        parts = []
        if by[BREACH]:
            parts.append("breach: " + "; ".join(f"{r.monitor} ({r.reason})" for r in by[BREACH]))
        if by[PASS]:
            parts.append(f"{', '.join(r.monitor for r in by[PASS])} passed")
        if by[INSUFFICIENT]:
            names = ", ".join(f"{r.monitor} ({r.reason})" for r in by[INSUFFICIENT])
            parts.append(f"not judged, neither pass nor fail: {names}")
        if not by[BREACH] and not by[PASS]:
            parts.insert(0, "no monitor could judge this window")
        return "; ".join(parts)

    def result(self, monitor: str) -> Result | None:
        """The result of ``monitor``, or None when it did not run."""
        return next((r for r in self.results if r.monitor == monitor), None)

    def figures(self) -> dict[str, dict]:
        """Every figure of every result: {key: {value, threshold, comparison, verdict}}."""
        return {f.key: f.to_dict() for r in self.results for f in r.figures}

    def breaches(self) -> list[Figure]:
        """The figures that breached their bound."""
        return [f for r in self.results for f in r.figures if f.verdict == BREACH]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: verdict, reason, digest, monitors {name: {verdict, reason, details}}, figures."""
        return _jsonable(
            {
                "verdict": self.verdict,
                "reason": self.reason,
                "digest": self.digest,
                "monitors": {r.monitor: r.to_dict() for r in self.results},
                "figures": self.figures(),
            }
        )


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, NaN/inf as None, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _monitor_types() -> dict[str, Any]:
    from mlflow_governance.monitoring.drift import DriftMonitor
    from mlflow_governance.monitoring.estimated_accuracy import EstimatedAccuracyMonitor
    from mlflow_governance.monitoring.fairness import FairnessMonitor
    from mlflow_governance.monitoring.quality import QualityMonitor

    return {
        "quality": QualityMonitor,
        "fairness": FairnessMonitor,
        "drift": DriftMonitor,
        "estimated_accuracy": EstimatedAccuracyMonitor,
    }


def build_monitors(config: MonitorConfig, reference: Reference) -> list[Monitor]:
    """The enabled monitors, each prepared once from ``reference`` (sampled once to 10,000 rows)."""
    reference = replace(reference, features=reference_sample(reference.features))
    types = _monitor_types()
    return [types[name].prepare(getattr(config, name), reference) for name in config.enabled()]


def evaluate(monitors: Sequence[Monitor], window: Window, digest: str) -> Evaluation:
    """Run every monitor on ``window``: BREACH if any breached, else PASS."""
    results = tuple(m.evaluate(window) for m in monitors)
    verdict = BREACH if any(r.verdict == BREACH for r in results) else PASS
    return Evaluation(verdict, results, digest)
