"""Production monitors of a governed model: quality, fairness, feature drift, estimated accuracy.

The four monitors Watson OpenScale runs on a deployment, one module each behind one small
interface (`base`): prepared once from the version's `Reference`, then ``evaluate(window)`` on
any window of scored rows (a validation month, a live window of a scoring sidecar). `config`
parses and digests the monitor configuration; `suite` prepares the enabled monitors and
combines their results.

    from mlflow_governance.monitoring import build_monitors, evaluate, load_config
    config = load_config("monitors.yaml")
    monitors = build_monitors(config, reference)
    evaluation = evaluate(monitors, window, config.digest())

Only `base` and `config` load on import (the governance server parses configurations without
scikit-learn or evidently); the suite and the monitors load on first use.
"""

from __future__ import annotations

from typing import Any

from mlflow_governance.monitoring.base import (
    BREACH,
    INSUFFICIENT,
    PASS,
    Figure,
    Monitor,
    Reference,
    Result,
    Window,
)
from mlflow_governance.monitoring.config import (
    MonitorConfig,
    MonitorConfigError,
    default_config,
    load_config,
    parse_config,
)

_LAZY = {
    "Evaluation": "suite",
    "build_monitors": "suite",
    "evaluate": "suite",
    "QualityMonitor": "quality",
    "FairnessMonitor": "fairness",
    "DriftMonitor": "drift",
    "EstimatedAccuracyMonitor": "estimated_accuracy",
}

__all__ = [
    "BREACH",
    "INSUFFICIENT",
    "PASS",
    "Figure",
    "Monitor",
    "MonitorConfig",
    "MonitorConfigError",
    "Reference",
    "Result",
    "Window",
    "default_config",
    "load_config",
    "parse_config",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
