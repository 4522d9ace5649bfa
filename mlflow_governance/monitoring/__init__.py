"""Production monitors of a governed model: quality, fairness, feature drift, estimated accuracy.

The four monitors Watson OpenScale runs on a deployment, one module each behind one small
interface (`base`): prepared once from the version's `Reference`, then ``evaluate(window)`` on
any window of scored rows (a validation month, a live window of a scoring sidecar). The monitor
configuration is parsed and digested in the core (`mlflow_governance.core.monitor_config`, which
the engine checks when it records one) and re-exported here; `suite` prepares the enabled
monitors and combines their results.

    from mlflow_governance.monitoring import build_monitors, evaluate, load_config
    config = load_config("monitors.yaml")
    monitors = build_monitors(config, reference)
    evaluation = evaluate(monitors, window, config.digest())

Only `base` and the configuration load on import (the governance server parses configurations without
scikit-learn or evidently); the suite and the monitors load on first use.

Owns: the four monitors and their suite. May import: the core, safe and training (its data
helpers and drift detection model); nothing above.
"""

from __future__ import annotations

from typing import Any

from mlflow_governance.core.monitor_config import (
    MonitorConfig,
    MonitorConfigError,
    default_config,
    load_config,
    parse_config,
)
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
