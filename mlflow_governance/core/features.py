"""The feature schema of the model the platform governs today: the airline delay model's features,
their kinds and its label.

It sits in the core because the monitor configuration the engine checks and records names these
features; the features are data, read by every stage above (training, monitors, serving,
explanations). Where a model brings its own contract this module is what it replaces.
"""

from __future__ import annotations

LABEL = "DELAYED"
NUMERIC_FEATURES: tuple[str, ...] = (
    "MONTH",
    "DAY",
    "DAY_OF_WEEK",
    "SCHEDULED_HOUR",
    "DEPARTURE_DELAY",
    "DISTANCE",
)
INTEGER_FEATURES: tuple[str, ...] = ("MONTH", "DAY", "DAY_OF_WEEK", "SCHEDULED_HOUR")
CATEGORICAL_FEATURES: tuple[str, ...] = ("CARRIER", "ORIGIN_AIRPORT", "DESTINATION_AIRPORT")
FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
NOT_FEATURES: tuple[str, ...] = ("FLIGHT_ID", "YEAR")
REQUIRED_COLUMNS: tuple[str, ...] = FEATURES + (LABEL,)
