"""Benchmark of the four production monitors on windows of real flights.

Trains a primary model (gradient boosting) and its drift detection model on the January and
February splits, prepares the monitors once from a 10,000-row reference sample (outside the
timings), scores windows of 1,000, 10,000 and 100,000 flights from March to December once,
then times each monitor's ``evaluate`` and all four together (median of a few repetitions,
after one warm-up call so lazy imports are not counted; drift's minimum window is lowered to
1,000 rows so that window is computed rather than refused). As the alternative a user would pick,
it also times evidently's DataDriftPreset Report over all feature columns on the same window
(reference Dataset built once, outside the timing). No network; runs in about a minute.

    .venv/bin/python benchmarks/monitor.py [--sizes 1000,10000,100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np

from mlflow_governance.airline.flights import source_tables
from mlflow_governance.core.features import FEATURES
from mlflow_governance.monitoring import Reference, Window, build_monitors, evaluate, parse_config
from mlflow_governance.training import drift
from mlflow_governance.training.data import feature_frame, label_rows, split
from mlflow_governance.training.pipeline import build_pipeline

SEED = 42
COLUMNS = ("quality", "fairness", "drift", "estimated_accuracy", "all four", "evidently preset")


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    warnings.filterwarnings("ignore")

    flights, airports = source_tables(None)
    rows = flights.merge(airports, on="FLIGHT_ID")
    s = split(label_rows(rows[rows["MONTH"] <= 2]), SEED)
    params = {"learning_rate": 0.1, "max_iter": 100, "max_leaf_nodes": 31}
    primary = build_pipeline("hist_gradient_boosting", params, SEED).fit(s.X_train, s.y_train)
    detector = drift.fit_drift_model(primary, s.X_val, s.y_val, SEED)
    accuracy = float((primary.predict(s.X_test) == s.y_test.to_numpy()).mean())
    reference = Reference(s.X_train, accuracy, primary, detector)  # sampled to 10,000 rows once, below
    # drift judges 2,000 rows or more by default; lowered so the 1,000-row window is computed, not refused
    config = parse_config({"drift": {"min_rows": 1000}})
    monitors = build_monitors(config, reference)
    later = rows[rows["MONTH"] >= 3]
    print(f"reference: {min(len(s.X_train), 10_000)} rows of Jan+Feb; windows from {len(later)} Mar-Dec flights")

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    evidently_reference = Dataset.from_pandas(s.X_train.sample(10_000, random_state=SEED), DataDefinition())

    def preset(window: Window) -> None:
        current = Dataset.from_pandas(window.features[list(FEATURES)], DataDefinition())
        Report([DataDriftPreset()]).run(current, evidently_reference)

    table: dict[int, dict[str, float]] = {}
    for size in sizes:
        sample = later.sample(n=size, random_state=SEED)
        X = feature_frame(sample)
        p = primary.predict_proba(X)[:, 1]
        window = Window(X, (p >= 0.5).astype("int64"), p, sample["DELAYED"].to_numpy("float64", na_value=np.nan))
        repeats = args.repeats if size < 100_000 else max(3, args.repeats // 2)
        timings = {}
        for monitor in monitors:
            monitor.evaluate(window)  # warm-up: lazy imports
            timings[monitor.name] = median_seconds(lambda m=monitor, w=window: m.evaluate(w), repeats)
        timings["all four"] = median_seconds(lambda w=window: evaluate(monitors, w, config.digest()), repeats)
        preset(window)
        timings["evidently preset"] = median_seconds(lambda w=window: preset(w), repeats)
        table[size] = timings
        verdict = evaluate(monitors, window, config.digest())
        print(f"{size:>7} rows: {verdict.verdict} ({verdict.reason})")

    print()
    print("| window | " + " | ".join(COLUMNS) + " |")
    print("|---:|" + "---:|" * len(COLUMNS))
    for size, timings in table.items():
        cells = " | ".join(f"{timings[c] * 1000:.0f} ms" for c in COLUMNS)
        print(f"| {size:,} rows | {cells} |")
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        print()
        print(f"growth from {lo:,} to {hi:,} rows (x{hi // lo}):")
        for c in COLUMNS:
            print(f"  {c}: x{table[hi][c] / table[lo][c]:.1f} "
                  f"({table[hi][c] / hi * 1e6:.1f} us/row at {hi:,} rows)")
    target = table.get(100_000, {}).get("all four")
    if target is not None:
        print(f"\nall four on 100,000 rows: {target:.2f} s (target < 2 s: {'met' if target < 2 else 'MISSED'})")


if __name__ == "__main__":
    main()
