"""Fairness monitor: disparate impact of the predictions between named groups.

Per configured attribute, the favourable-outcome rate (by default prediction 0, "not delayed")
of the *monitored* group (rows whose feature value is one of the monitored values, e.g.
ORIGIN_AIRPORT EWR) divided by that of the *reference* group (e.g. JFK), as Watson OpenScale
defines it. Not the lowest group over the highest one: the groups are named by the validator,
so the figure answers a stated question. The four-fifths rule: a ratio below 0.8 is a breach.
Only the lower bound is judged; a monitored group treated better than the reference is no
breach of this rule.

A group with fewer than ``min_group_size`` rows in the window makes that attribute
INSUFFICIENT (rates over a handful of flights are noise). Only predictions are used, so the
monitor runs on unlabelled traffic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlflow_governance.core.monitor_config import FairnessAttribute, FairnessConfig
from mlflow_governance.monitoring.base import (
    BREACH,
    INSUFFICIENT,
    Figure,
    Reference,
    Result,
    Window,
    fmt,
    fmt_pair,
    judge,
    number,
    overall,
    require_columns,
)

NAME = "fairness"


def _names(values: tuple[Any, ...]) -> str:
    return "/".join(str(v) for v in values)


class FairnessMonitor:
    """Disparate impact per attribute, monitored group over reference group."""

    name = NAME

    def __init__(self, config: FairnessConfig) -> None:
        self.config = config

    @classmethod
    def prepare(cls, config: FairnessConfig, reference: Reference | None = None) -> FairnessMonitor:
        """Fairness is judged on the window's predictions alone."""
        return cls(config)

    def evaluate(self, window: Window) -> Result:
        require_columns(window.features, [a.feature for a in self.config.attributes], NAME)
        favourable = np.asarray(window.prediction) == self.config.favourable_prediction
        rows, figures, reasons = [], [], []
        for attribute in self.config.attributes:
            row, figure, reason = self._attribute(attribute, window.features[attribute.feature], favourable)
            rows.append(row)
            figures.append(figure)
            reasons.append((figure.verdict, reason))
        verdict = overall([f.verdict for f in figures])
        chosen = [r for v, r in reasons if v == verdict] or [r for _, r in reasons]
        details = {
            "favourable_prediction": self.config.favourable_prediction,
            "threshold": self.config.threshold,
            "min_group_size": self.config.min_group_size,
            "attributes": rows,
        }
        return Result(NAME, verdict, "; ".join(chosen), tuple(figures), details)

    def _attribute(
        self, attribute: FairnessAttribute, column: pd.Series, favourable: np.ndarray
    ) -> tuple[dict[str, Any], Figure, str]:
        cfg = self.config
        label = f"{attribute.feature} ({_names(attribute.monitored)} vs {_names(attribute.reference)})"
        groups = {}
        for group, values in (("monitored", attribute.monitored), ("reference", attribute.reference)):
            mask = column.isin(list(values)).to_numpy(dtype=bool)
            n, fav = int(mask.sum()), int(np.count_nonzero(favourable & mask))
            groups[group] = {"group": group, "values": list(values), "rows": n, "favourable": fav,
                             "favourable_rate": fav / n if n else None}
        small = [g for g in groups.values() if g["rows"] < cfg.min_group_size]
        mon, ref = groups["monitored"]["favourable_rate"], groups["reference"]["favourable_rate"]
        di = mon / ref if not small and ref else None
        key = f"{NAME}.{attribute.feature}.disparate_impact"
        if small:
            verdict = INSUFFICIENT
            reason = "; ".join(
                f"{attribute.feature}: the {g['group']} group {_names(tuple(g['values']))} has {g['rows']} rows, "
                f"fewer than the {cfg.min_group_size} needed" for g in small
            )
        elif di is None:
            verdict = INSUFFICIENT
            reason = f"disparate impact on {label} is undefined: the reference group has no favourable prediction"
        else:
            verdict = judge(di, cfg.threshold, ">=")
            value, bound = fmt_pair(di, cfg.threshold)
            if verdict == BREACH:
                reason = f"disparate impact on {label} {value} is below {bound}"
            else:
                reason = f"disparate impact on {label} {fmt(di)} >= {fmt(cfg.threshold)}"
        row = {
            "feature": attribute.feature,
            "disparate_impact": number(di),
            "threshold": cfg.threshold,
            "verdict": verdict,
            "groups": [groups["monitored"], groups["reference"]],
            "values": _per_value(attribute, column, favourable),
        }
        return row, Figure(key, number(di), cfg.threshold, ">=", verdict), reason


def _per_value(attribute: FairnessAttribute, column: pd.Series, favourable: np.ndarray) -> list[dict[str, Any]]:
    """One table row per group value: its rows, favourable predictions and favourable rate."""
    out = []
    for group, values in (("monitored", attribute.monitored), ("reference", attribute.reference)):
        for value in values:
            mask = (column == value).to_numpy(dtype=bool, na_value=False)
            n, fav = int(mask.sum()), int(np.count_nonzero(favourable & mask))
            out.append({"value": value, "group": group, "rows": n, "favourable": fav,
                        "favourable_rate": fav / n if n else None})
    return out
