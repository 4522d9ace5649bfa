"""The quality rule set: a profile becomes ``training_data_quality_flag`` with its reasons.

Error rules decide the flag: the data is ``acceptable`` only if every error rule passes; each
failing error rule is a reason. Warning rules never change the flag but are listed (in the
profile, the HTML and the governance comment) so the ModelOwner sees them before approving.

=====================  ========  ================================================================
rule                   severity  passes when
=====================  ========  ================================================================
enough_rows            error     the training set has at least ``min_rows`` rows (1,000)
label_present          error     the label column (DELAYED) is in the training set
label_binary           error     the label's values are exactly 0 and 1
label_missing          error     at most 5 % of the rows miss the label (cancelled/diverted flights)
class_balance          error     the minority class is at least 5 % of the labelled rows
feature_missing        error     no other column misses more than 5 % of its values
key_unique             error     every joined row has its own key (the join did not fan out)
join_coverage          error     at most 1 % of the keys of either source found no partner
missing_values         warning   no column has missing values (else: drop or impute them)
constant_columns       warning   no column holds a single value (it carries no information)
skewed_columns         warning   no numeric column has an absolute skew above 3
=====================  ========  ================================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ACCEPTABLE = "acceptable"
NOT_ACCEPTABLE = "not acceptable"


@dataclass(frozen=True)
class Thresholds:
    """The limits of the rule set (documented defaults)."""

    min_rows: int = 1_000
    max_label_missing_share: float = 0.05
    min_minority_share: float = 0.05
    max_feature_missing_share: float = 0.05
    max_unmatched_share: float = 0.01
    max_abs_skew: float = 3.0


def _rule(rules: list, name: str, severity: str, passed: bool, detail: str) -> None:
    rules.append({"rule": name, "severity": severity, "passed": bool(passed), "detail": detail})


def evaluate(profile: dict[str, Any], key: str | None = None, limits: Thresholds | None = None) -> dict[str, Any]:
    """Apply the rule set to ``profile`` (as built by the acquisition, with its ``join`` section)."""
    t = limits or Thresholds()
    rows = int(profile.get("rows", 0))
    columns: dict[str, dict] = profile.get("columns", {})
    label = profile.get("label", {}) or {}
    label_name = label.get("column")
    rules: list[dict[str, Any]] = []

    _rule(rules, "enough_rows", "error", rows >= t.min_rows, f"{rows:,} rows (at least {t.min_rows:,} needed)")
    present = bool(label.get("present"))
    _rule(rules, "label_present", "error", present,
          f"label {label_name} is {'present' if present else 'not among the columns'}")
    if present:
        values = sorted(label.get("counts", {}))
        # A DOUBLE label column profiles as "0.0"/"1.0": the same classes, as training accepts them.
        normalized = sorted({v[:-2] if v.endswith(".0") else v for v in values})
        _rule(rules, "label_binary", "error", normalized == ["0", "1"],
              f"label values {', '.join(values) or 'none'} (expected 0 and 1)")
        share = float(label.get("missing_share", 0.0))
        _rule(rules, "label_missing", "error", share <= t.max_label_missing_share,
              f"{label.get('missing', 0):,} rows ({share:.2%}) miss {label_name} "
              f"(at most {t.max_label_missing_share:.0%} allowed)")
        minority = float(label.get("minority_share", 0.0))
        balance = ", ".join(f"{k}: {v:.1%}" for k, v in label.get("shares", {}).items())
        _rule(rules, "class_balance", "error", minority >= t.min_minority_share,
              f"class balance {balance or 'none'}; minority {minority:.1%} (at least {t.min_minority_share:.0%} needed)")
    too_sparse = {n: c["null_share"] for n, c in columns.items() if n != label_name
                  and c["null_share"] > t.max_feature_missing_share}
    _rule(rules, "feature_missing", "error", not too_sparse,
          "; ".join(f"{n} misses {s:.2%}" for n, s in too_sparse.items())
          or f"every feature column misses at most {t.max_feature_missing_share:.0%}")
    if key and key in columns:
        distinct = columns[key]["distinct"]
        _rule(rules, "key_unique", "error", distinct == rows and columns[key]["nulls"] == 0,
              f"{distinct:,} distinct {key} for {rows:,} rows")
    join = profile.get("join")
    if join:
        left_keys = join["matched_keys"] + join["unmatched_flight_keys"]
        right_keys = join["matched_keys"] + join["unmatched_airport_keys"]
        left_share = join["unmatched_flight_keys"] / left_keys if left_keys else 1.0
        right_share = join["unmatched_airport_keys"] / right_keys if right_keys else 1.0
        _rule(rules, "join_coverage", "error", max(left_share, right_share) <= t.max_unmatched_share,
              f"{join['unmatched_flight_keys']:,} flight keys ({left_share:.2%}) and "
              f"{join['unmatched_airport_keys']:,} airport keys ({right_share:.2%}) found no partner "
              f"(at most {t.max_unmatched_share:.0%} allowed)")

    missing = {n: c["nulls"] for n, c in columns.items() if c["nulls"]}
    _rule(rules, "missing_values", "warning", not missing,
          ("; ".join(f"{n}: {v:,} missing" for n, v in missing.items())
           + " (cancelled or diverted flights: drop these rows or impute before training)")
          if missing else "no missing values")
    constant = [n for n, c in columns.items() if c["distinct"] <= 1]
    _rule(rules, "constant_columns", "warning", not constant,
          f"single-valued: {', '.join(constant)}" if constant else "no single-valued column")
    skewed = {n: c["skew"] for n, c in columns.items() if n not in (key, label_name)
              and c.get("skew") is not None and abs(c["skew"]) > t.max_abs_skew}
    _rule(rules, "skewed_columns", "warning", not skewed,
          "; ".join(f"{n} skew {s:.2f}" for n, s in skewed.items()) or f"no |skew| above {t.max_abs_skew:g}")

    reasons = [f"{r['rule']}: {r['detail']}" for r in rules if r["severity"] == "error" and not r["passed"]]
    warnings = [f"{r['rule']}: {r['detail']}" for r in rules if r["severity"] == "warning" and not r["passed"]]
    return {
        "flag": NOT_ACCEPTABLE if reasons else ACCEPTABLE,
        "acceptable": not reasons,
        "reasons": reasons,
        "warnings": warnings,
        "rules": rules,
        "thresholds": asdict(t),
    }
