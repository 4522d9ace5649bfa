"""UAT deployment: a REST smoke test of the version under validation on a staging sidecar.

``mlgov validate --smoke-test`` starts ``mlgov serve --model NAME --version N --staging`` itself
(`StagingSidecar`, which runs it as a `mlflow_governance.sidecar.process.SidecarProcess`): a child
process on a free 127.0.0.1 port, with a payload database and spool of its own in a temporary
directory, the production monitor off, and the validator's own identity and registry
(``MLGOV_USER``, or ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` against a server, inherited from
the validation's environment). It waits for ``/health``, runs the smoke test, and stops the
sidecar with SIGTERM (a clean stop is exit 0), always: after a failure, an error or an interrupt
too. ``--smoke-url URL`` tests a staging sidecar that is already running
(the deployer's, say); `check_running` first confirms, before anything is written, that its
``/status`` answers for this model and version in staging mode.

The smoke test (`run_smoke_test`) talks real HTTP:

* ``GET /status``: the model, the version, staging mode, the version's stage (the one governance
  reports, a stage the staging gate serves: `workflow.STAGING_STAGES`) and that it is serving;
* ``POST /invocations`` with the same sample of validation rows (`SAMPLE_ROWS`, seeded; a row with
  a missing value is included when the data has one) in each of MLflow's body formats: each
  answer 200, one distinct request id per row, ``"staging": true``, this model and version, and
  predictions and probabilities equal to the validation's own local ones for those rows (within
  `TOLERANCE`; the largest difference is reported);
* two bad bodies (malformed JSON, an unknown column): 400 with a JSON error;
* the latency of every call (p50 and max).

The result is a JSON-ready dict (``passed``, ``failures``, ``checks`` ...) that the validation
records in its report, metrics and submission comment; a failed smoke test blocks the submission.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_CONFLICT

from mlflow_governance.core import workflow
from mlflow_governance.sidecar import no_auth_args
from mlflow_governance.sidecar.bodies import FORMATS
from mlflow_governance.sidecar.process import SidecarProcess, mlgov_command

SAMPLE_ROWS = 20
SAMPLE_SEED = 0
TOLERANCE = 1e-9  # same model, same rows, same scoring function: the answers must agree exactly
START_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 45.0
REQUEST_TIMEOUT_SECONDS = 30.0
HEALTH_POLL_SECONDS = 0.25
START_ATTEMPTS = 2  # a second port when the first was taken between choosing and binding it
LOG_TAIL_CHARS = 20_000
UNKNOWN_COLUMN = "NOT_A_MODEL_COLUMN"
SHOWN_FAILURES = 3  # in the one-line error; the report lists them all
STARTED, GIVEN = "started", "given"


class SmokeTestFailed(MlflowException):
    """The UAT smoke test failed: the run is logged with it, nothing submitted (``mlgov validate`` exit 7)."""

    def __init__(self, message: str):
        super().__init__(message, error_code=RESOURCE_CONFLICT)


def _one_line(text: Any, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def normalize_url(url: str) -> str:
    """``url`` without trailing slashes; ValueError unless it is an http(s) URL."""
    base = (url or "").strip().rstrip("/")
    if not base.startswith(("http://", "https://")) or len(base) <= len("https://"):
        raise ValueError(f"--smoke-url must be the http(s) URL of a running staging sidecar, not {url!r}")
    return base


def _get_json(url: str, timeout: float = REQUEST_TIMEOUT_SECONDS) -> tuple[int, Any]:
    import requests

    from mlflow_governance.sidecar import client_credentials

    resp = requests.get(url, timeout=timeout, auth=client_credentials())
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, None


def check_running(url: str, model: str, version: int) -> str:
    """The normalized URL of a staging sidecar of ``model`` version ``version``; a refusal
    (RESOURCE_CONFLICT, one line naming the URL) when its ``/status`` says otherwise."""
    import requests

    base = normalize_url(url)
    try:
        code, status = _get_json(base + "/status", timeout=10.0)
    except requests.RequestException:
        raise MlflowException(f"the sidecar at {base} does not answer (is `mlgov serve --model {model} --version "
                              f"{version} --staging` running there?)", error_code=RESOURCE_CONFLICT) from None
    if code != 200 or not isinstance(status, dict) or "model" not in status:
        raise MlflowException(f"{base}/status answered HTTP {code}, not a scoring sidecar's status",
                              error_code=RESOURCE_CONFLICT)
    if status.get("model") != model or status.get("version") != int(version):
        raise MlflowException(
            f"the sidecar at {base} serves {status.get('model')!r} version {status.get('version')}, not {model!r} "
            f"version {version}: the smoke test needs a staging sidecar of the version under validation",
            error_code=RESOURCE_CONFLICT)
    if status.get("staging") is not True:
        raise MlflowException(
            f"the sidecar at {base} serves {model!r} version {version} in {status.get('mode') or 'production'} "
            f"mode, not staging: the smoke test needs `mlgov serve --model {model} --version {version} --staging`",
            error_code=RESOURCE_CONFLICT)
    return base


# --- the rows ----------------------------------------------------------------------------------


def sample_positions(features: pd.DataFrame, rows: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED) -> list[int]:
    """Seeded row positions of ``features``; one row with a missing value among them when any has one."""
    n = len(features)
    k = min(int(rows), n)
    rng = np.random.default_rng(seed)
    picked = [int(i) for i in rng.choice(n, size=k, replace=False)]
    missing = np.flatnonzero(features.isna().any(axis=1).to_numpy())
    if k and len(missing) and not set(picked) & set(missing.tolist()):
        picked[-1] = int(missing[rng.integers(len(missing))])
    return sorted(picked)


def _native(value: Any) -> Any:
    """A JSON value as a client writes it: NaN/None as null, NumPy scalars as Python numbers
    (floats keep every digit: json writes their shortest exact repr)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return str(value)


def row_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = [str(c) for c in frame.columns]
    return [{c: _native(v) for c, v in zip(columns, row, strict=True)} for row in frame.itertuples(index=False, name=None)]


def request_bodies(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The rows of ``frame`` in each of MLflow's scoring body formats (`bodies.FORMATS`)."""
    records = row_records(frame)
    columns = [str(c) for c in frame.columns]
    out = {
        "dataframe_split": {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in records]}},
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs": {"inputs": {c: [r[c] for r in records] for c in columns}},
    }
    assert tuple(out) == FORMATS, "the smoke test covers every body format the sidecar takes"
    return out


def bad_bodies(frame: pd.DataFrame) -> list[tuple[str, bytes]]:
    """(what, raw body) of requests the sidecar must refuse with 400 and a JSON error."""
    first = row_records(frame.head(1))[0]
    return [
        ("malformed JSON", b'{"dataframe_records": [{"MONTH": 3,'),
        ("an unknown column", json.dumps({"dataframe_records": [{**first, UNKNOWN_COLUMN: 1}]}).encode()),
    ]


# --- the smoke test ----------------------------------------------------------------------------


class _Record:
    def __init__(self) -> None:
        self.checks: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.latencies: list[float] = []

    def add(self, check: str, problems: list[str], detail: str = "", http_status: int | None = None,
            ms: float | None = None) -> None:
        passed = not problems
        self.checks.append({"check": check, "passed": passed, "http_status": http_status,
                            "ms": None if ms is None else round(ms, 2),
                            "detail": _one_line("; ".join(problems) if problems else detail, 600)})
        self.failures.extend(f"{check}: {_one_line(p)}" for p in problems)


def _error_text(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return _one_line(resp.text, 200) if resp.text else ""
    if isinstance(body, dict):
        return _one_line(f"{body.get('error_code') or ''}: {body.get('message') or ''}".strip(": "), 200)
    return ""


def _timed(session: Any, method: str, url: str, **kwargs: Any) -> tuple[Any, float, str | None]:
    import requests

    started = time.perf_counter()
    try:
        resp = session.request(method, url, timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
    except requests.RequestException as exc:
        return None, (time.perf_counter() - started) * 1000, f"no answer ({type(exc).__name__})"
    return resp, (time.perf_counter() - started) * 1000, None


def _check_status(rec: _Record, session: Any, base: str, model: str, version: int, stage: str | None) -> dict:
    resp, ms, error = _timed(session, "GET", base + "/status")
    rec.latencies.append(ms)
    if error:
        rec.add("GET /status", [error], ms=ms)
        return {}
    status = None
    try:
        status = resp.json()
    except ValueError:
        pass
    if resp.status_code != 200 or not isinstance(status, dict):
        rec.add("GET /status", [f"answered HTTP {resp.status_code} {_error_text(resp)}".strip()],
                http_status=resp.status_code, ms=ms)
        return {}
    wanted = {"model": model, "version": int(version), "staging": True, "mode": "staging", "stage": stage,
              "serving": True}
    problems = [f"{key} is {status.get(key)!r}, not {value!r}" for key, value in wanted.items()
                if status.get(key) != value]
    if status.get("stage") not in workflow.STAGING_STAGES:
        problems.append(f"stage {status.get('stage')!r} is not one the staging gate serves")
    refusal = status.get("refusal") or {}
    if refusal:
        problems.append(f"it refuses to score: HTTP {refusal.get('status')} {_one_line(refusal.get('message'), 200)}")
    shown = {k: status.get(k) for k in ("model", "version", "mode", "staging", "stage", "usability", "serving")}
    rec.add("GET /status", problems, ", ".join(f"{k} {v}" for k, v in shown.items()), resp.status_code, ms)
    return shown


def _check_scoring(rec: _Record, session: Any, base: str, fmt: str, body: dict, model: str, version: int,
                   prediction: np.ndarray, probability: np.ndarray, seen_ids: set[str]) -> float | None:
    """One format's call; the largest probability difference (None when not comparable)."""
    check = f"POST /invocations ({fmt})"
    resp, ms, error = _timed(session, "POST", base + "/invocations", data=json.dumps(body),
                             headers={"Content-Type": "application/json"})
    rec.latencies.append(ms)
    if error:
        rec.add(check, [error], ms=ms)
        return None
    if resp.status_code != 200:
        rec.add(check, [f"answered HTTP {resp.status_code} {_error_text(resp)}".strip()], http_status=resp.status_code,
                ms=ms)
        return None
    try:
        answer = resp.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        rec.add(check, ["the answer is not a JSON object"], http_status=resp.status_code, ms=ms)
        return None
    n = len(prediction)
    problems: list[str] = []
    if answer.get("staging") is not True:
        problems.append("the answer does not say staging")
    if answer.get("model") != model or answer.get("version") != int(version):
        problems.append(f"the answer names {answer.get('model')!r} version {answer.get('version')}")
    ids = answer.get("request_ids")
    if not isinstance(ids, list) or len(ids) != n or not all(isinstance(i, str) and i for i in ids):
        problems.append(f"{len(ids) if isinstance(ids, list) else 'no'} request ids for {n} rows")
    elif len(set(ids)) != n or seen_ids & set(ids):
        problems.append("request ids are not distinct")
    else:
        seen_ids.update(ids)
    diff = None
    try:
        got_pred = np.asarray(answer.get("predictions"), dtype="float64").reshape(-1)
        got_prob = np.asarray(answer.get("probabilities"), dtype="float64").reshape(-1)
    except (TypeError, ValueError):
        problems.append("predictions or probabilities are not lists of numbers")
    else:
        if len(got_pred) != n or len(got_prob) != n:
            problems.append(f"{len(got_pred)} predictions and {len(got_prob)} probabilities for {n} rows")
        else:
            mismatches = int((got_pred != np.asarray(prediction, dtype="float64")).sum())
            diff = float(np.max(np.abs(got_prob - np.asarray(probability, dtype="float64")))) if n else 0.0
            if mismatches:
                problems.append(f"{mismatches} of {n} predictions differ from this validation's own")
            if not diff <= TOLERANCE:  # NaN-safe
                problems.append(f"probabilities differ from this validation's own by up to {diff:.3g} "
                                f"(tolerance {TOLERANCE:g})")
    detail = f"{n} rows, {n} request ids, staging; largest probability difference {diff:.3g}" \
        if diff is not None else ""
    rec.add(check, problems, detail, resp.status_code, ms)
    return diff


def _check_refused(rec: _Record, session: Any, base: str, what: str, raw: bytes) -> None:
    check = f"POST /invocations ({what})"
    resp, ms, error = _timed(session, "POST", base + "/invocations", data=raw,
                             headers={"Content-Type": "application/json"})
    rec.latencies.append(ms)
    if error:
        rec.add(check, [error], ms=ms)
        return
    try:
        body = resp.json()
    except ValueError:
        body = None
    problems = []
    if resp.status_code != 400:
        problems.append(f"answered HTTP {resp.status_code}, not 400")
    if not isinstance(body, dict) or not body.get("error_code") or not body.get("message"):
        problems.append("the answer is not a JSON error with error_code and message")
    detail = f"{resp.status_code} {body.get('error_code')}: {body.get('message')}" if isinstance(body, dict) else ""
    rec.add(check, problems, detail, resp.status_code, ms)


def run_smoke_test(url: str, model: str, version: int, stage: str | None, features: pd.DataFrame,
                   prediction: np.ndarray, probability: np.ndarray, rows: int = SAMPLE_ROWS) -> dict[str, Any]:
    """The smoke test of the staging sidecar at ``url`` against the validation's own scoring
    (``prediction``/``probability`` of ``features``, row for row); see the module docstring."""
    import requests

    positions = sample_positions(features, rows)
    sample = features.iloc[positions]
    local_pred = np.asarray(prediction)[positions]
    local_prob = np.asarray(probability, dtype="float64")[positions]
    rec = _Record()
    diffs: list[float] = []
    seen: set[str] = set()
    from mlflow_governance.sidecar import client_credentials

    with requests.Session() as session:
        session.auth = client_credentials()
        status = _check_status(rec, session, url, model, version, stage)
        for fmt, body in request_bodies(sample).items():
            diff = _check_scoring(rec, session, url, fmt, body, model, version, local_pred, local_prob, seen)
            if diff is not None:
                diffs.append(diff)
        for what, raw in bad_bodies(sample):
            _check_refused(rec, session, url, what, raw)
    scored = [c for c in rec.checks if c["check"].startswith("POST /invocations (") and
              c["check"][len("POST /invocations ("):-1] in FORMATS]
    return {
        "passed": not rec.failures,
        "url": url,
        "model": model,
        "version": int(version),
        "expected_stage": stage,
        "rows": len(positions),
        "row_positions": positions,
        "formats": list(FORMATS),
        "formats_matched": sum(1 for c in scored if c["passed"]),
        "tolerance": TOLERANCE,
        "max_abs_diff": max(diffs) if diffs else None,
        "latency_ms": _latency(rec.latencies),
        "status": status,
        "checks": rec.checks,
        "failures": rec.failures,
    }


def _latency(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"calls": 0, "p50": None, "max": None}
    return {"calls": len(values), "p50": round(float(np.median(values)), 2), "max": round(float(max(values)), 2)}


def failed_result(url: str | None, model: str, version: int, stage: str | None, failure: str) -> dict[str, Any]:
    """The result of a smoke test that could not run (the staging sidecar did not start)."""
    return {"passed": False, "url": url, "model": model, "version": int(version), "expected_stage": stage,
            "rows": 0, "row_positions": [], "formats": list(FORMATS), "formats_matched": 0, "tolerance": TOLERANCE,
            "max_abs_diff": None, "latency_ms": _latency([]), "status": {},
            "checks": [{"check": "start the staging sidecar", "passed": False, "http_status": None, "ms": None,
                        "detail": _one_line(failure, 600)}],
            "failures": [_one_line(failure, 600)]}


def summary(result: dict[str, Any]) -> str:
    """One line: the outcome, where, and the figures (for the CLI and the submission comment)."""
    origin = "staging sidecar started by the validator" if (result.get("sidecar") or {}).get("origin") == STARTED \
        else "running staging sidecar"
    if not result.get("passed"):
        failures = grouped(result.get("failures") or ["no check passed"])
        more = f" (and {len(failures) - SHOWN_FAILURES} more in the report)" if len(failures) > SHOWN_FAILURES else ""
        return f"UAT smoke test failed on {result.get('url')} ({origin}): {'; '.join(failures[:SHOWN_FAILURES])}{more}"
    lat = result.get("latency_ms") or {}
    diff = result.get("max_abs_diff")
    return (f"UAT smoke test passed on {result.get('url')} ({origin}): {result.get('rows')} validation rows in "
            f"{len(result.get('formats') or [])} body formats matched this validation's predictions (largest "
            f"probability difference {diff:.3g}), p50 {lat.get('p50')} ms, max {lat.get('max')} ms")


def grouped(failures: list[str]) -> list[str]:
    """``failures`` (``"check: what"``) with the checks that failed the same way named once:
    ``POST /invocations (dataframe_split, inputs): answered HTTP 413 ...``."""
    groups: dict[str, list[str]] = {}
    for failure in failures:
        check, _, what = failure.partition(": ")
        groups.setdefault(what, []).append(check)
    prefix = "POST /invocations ("
    out = []
    for what, checks in groups.items():
        if len(checks) > 1 and all(c.startswith(prefix) and c.endswith(")") for c in checks):
            name = prefix + ", ".join(c[len(prefix):-1] for c in checks) + ")"
        else:
            name = ", ".join(checks)
        out.append(f"{name}: {what}" if what else name)
    return out


# --- a staging sidecar of the validator's own ----------------------------------------------------


class StagingSidecar:
    """``mlgov serve --model M --version N --staging`` as a child process of the validation
    (`mlflow_governance.sidecar.process.SidecarProcess`).

    Started (without waiting) on entering the ``with`` block, so that it boots while the
    validation scores; `wait_ready` waits for ``/health``; leaving the block stops it (SIGTERM,
    then SIGKILL of its process group after `STOP_TIMEOUT_SECONDS`) and removes its temporary
    directory (payload database, spool, log). While it runs, a SIGTERM to the validation raises
    SystemExit so that the block still stops it.
    """

    def __init__(self, model: str, version: int, registry_uri: str | None = None, host: str = "127.0.0.1"):
        self.model, self.version, self.registry_uri, self.host = model, int(version), registry_uri, host
        self.process: SidecarProcess | None = None
        self.exit_code: int | None = None
        self.log_text = ""
        self.stopped_cleanly: bool | None = None
        self._tmp: Path | None = None
        self._old_sigterm: Any = None
        self.interrupted: int | None = None

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.process.proc if self.process else None

    @property
    def port(self) -> int | None:
        return self.process.port if self.process else None

    @property
    def command(self) -> list[str]:
        return self.process.command if self.process else []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """The validation's environment (its identity and registry), for a sidecar of its own."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("MLFLOW_RUN_ID", "MLGOV_SERVE_OPTIONS", "PROMETHEUS_MULTIPROC_DIR")}
        if self.registry_uri:
            env["MLFLOW_REGISTRY_URI"] = self.registry_uri
        env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        return env

    def start(self) -> StagingSidecar:
        self._tmp = Path(tempfile.mkdtemp(prefix="mlgov-smoke-"))
        if threading.current_thread() is threading.main_thread():
            def interrupted(signum: int, _frame: Any) -> None:
                # Remembered as well as raised: a signal that lands while the main thread runs a
                # finalizer (a weakref callback, __del__) has its SystemExit swallowed by Python
                # ("Exception ignored in ..."), and `stop` must still end the validation.
                self.interrupted = signum
                raise SystemExit(128 + signum)

            self._old_sigterm = signal.signal(signal.SIGTERM, interrupted)
        try:
            self._spawn()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self) -> None:
        """A new ``mlgov serve`` on a free port, its output appended to ``sidecar.log``."""
        assert self._tmp is not None
        self.process = SidecarProcess(
            ["--model", self.model, "--version", str(self.version), "--staging"], self.environment(), self._tmp,
            self.host, name="sidecar", later_args=[
                "--workers", "1", "--monitor-every-rows", "0", "--monitor-every-seconds", "0",
                "--payload-url", f"sqlite:///{self._tmp / 'payloads.db'}", "--spool-dir", str(self._tmp / "spool"),
                *no_auth_args()])
        self.process.start()

    def _log_so_far(self) -> str:
        if self._tmp is None or self.process is None:
            return self.log_text
        return self.process.log_text()

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> str | None:
        """None once ``/health`` answers 200; else why the sidecar did not start (one line)."""
        attempts = 1
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            try:
                code = self.process.wait_healthy(deadline, HEALTH_POLL_SECONDS)
            except TimeoutError:
                return f"the staging sidecar did not answer {self.url}/health within {timeout:.0f}s"
            if code is None:
                return None
            log = self._log_so_far()
            if attempts < START_ATTEMPTS and ("already in use" in log or "Connection in use" in log):
                attempts += 1
                self._spawn()
                continue
            errors = [line for line in log.splitlines() if line.startswith("Error:")]
            said = errors[-1] if errors else (log.strip().splitlines() or ["no output"])[-1]
            return f"the staging sidecar did not start: mlgov serve exited with code {code}: {_one_line(said)}"

    def stop(self) -> int | None:
        """Stop the sidecar (SIGTERM: gunicorn finishes its requests); its exit code. A SIGTERM to
        the validation meanwhile waits until the sidecar is gone, then raises SystemExit."""
        deferred: list[int] = []
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, lambda signum, _frame: deferred.append(signum))
        try:
            if self.process is not None and self.process.proc is not None:
                running = self.process.proc.poll() is None
                self.exit_code = self.process.stop(STOP_TIMEOUT_SECONDS, group=False)
                if running and self.process.killed:
                    self.stopped_cleanly = False
                if running and self.stopped_cleanly is None:
                    self.stopped_cleanly = self.exit_code == 0
        finally:
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None
            if self._tmp is not None:
                self.log_text = self._log_so_far()[-LOG_TAIL_CHARS:]
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None
        if self.interrupted is None and deferred:
            self.interrupted = deferred[0]
        if self.interrupted is not None:
            raise SystemExit(128 + self.interrupted)
        return self.exit_code

    def __enter__(self) -> StagingSidecar:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        """Where and how it ran, for the report (after `stop`)."""
        shown = ["mlgov", *self.command[len(mlgov_command()):]]
        return {"origin": STARTED, "command": " ".join(shown), "pid": self.proc.pid if self.proc else None,
                "port": self.port, "exit_code": self.exit_code, "stopped_cleanly": bool(self.stopped_cleanly)}


def smoke_test(target: StagingSidecar | str, model: str, version: int, stage: str | None, features: pd.DataFrame,
               prediction: np.ndarray, probability: np.ndarray, identity: str | None = None) -> dict[str, Any]:
    """Run the smoke test against ``target`` (a started `StagingSidecar`, or a URL that
    `check_running` accepted); a started sidecar is waited for first."""
    if isinstance(target, StagingSidecar):
        problem = target.wait_ready()
        if problem:
            result = failed_result(target.url, model, version, stage, problem)
        else:
            result = run_smoke_test(target.url, model, version, stage, features, prediction, probability)
        result["sidecar"] = {"origin": STARTED, "identity": identity, "ready": problem is None}
    else:
        result = run_smoke_test(target, model, version, stage, features, prediction, probability)
        result["sidecar"] = {"origin": GIVEN, "identity": None}
    return result


def after_stop(result: dict[str, Any], sidecar: StagingSidecar) -> dict[str, Any]:
    """``result`` with how the validator's sidecar ran and stopped; a stop that was not clean fails it."""
    result["sidecar"] = {**(result.get("sidecar") or {}), **sidecar.describe()}
    if not result["sidecar"].get("ready"):
        return result  # it did not start: that is the failure already recorded
    problems = [] if sidecar.stopped_cleanly else [f"mlgov serve exited with code {sidecar.exit_code}, not 0 "
                                                   "after SIGTERM"]
    if sidecar.port is not None and _listening(sidecar.host, sidecar.port):
        problems.append(f"port {sidecar.port} still accepts connections")
    check = "stop the staging sidecar"
    result.setdefault("checks", []).append({
        "check": check, "passed": not problems, "http_status": None, "ms": None,
        "detail": _one_line("; ".join(problems)) if problems else f"SIGTERM: exit 0, port {sidecar.port} closed"})
    if problems:
        result.setdefault("failures", []).extend(f"{check}: {p}" for p in problems)
        result["passed"] = False
    return result


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0
