"""The sidecar's Flask application: `create_app(options)` makes one per gunicorn worker.

Routes:

* ``POST /invocations``: MLflow's scoring bodies (`bodies`), answered as
  ``{"predictions": [...], "probabilities": [...], "request_ids": [...], "model", "version"}``
  (and ``"staging": true`` in staging mode) once the `gate` allows scoring; every row goes to the
  payload writer. Refusals: 423 usability reject, 410 decommissioned, 409/503 not servable,
  503 registry unavailable (fail closed); bad bodies 400 (413 for size).
* ``POST /explain``: the same bodies, the same gate (423/410/409/503 exactly as for scoring), at
  most `MAX_EXPLAIN_ROWS` rows; answered as ``{"explanations": [{"base_value", "contributions":
  {raw column: value}, "output", "prediction", "additivity_error", "method", "exact",
  "counterfactual", "counterfactual_reason"}, ...], "model", "version", ...}``
  (`mlflow_governance.explanations`). Nothing goes to the payload table: an explanation is a
  question about a prediction, not one, and its rows would count twice in the monitors' windows.
* ``POST /feedback``: ``{"feedback": [{"request_id", "label"}, ...]}`` → ``{"accepted", "unknown"}``;
  each label records who gave it, and an id that already has a label gets 409 (nothing of that
  request is stored);
* ``POST /feedback/correct``: ``{"request_id", "label", "reason"}`` replaces a label, keeping the old
  one with who corrected it, when and why;
* ``GET /health`` (liveness), ``GET /status`` (governance, last monitor evaluation, who set
  usability, payload logging), ``GET /metrics`` (Prometheus).

Who may call what is `mlflow_governance.sidecar.access`'s route table, checked before every handler
(401/403/423/429/503 refusals); every stored row names its caller. Limits: ``max_rows`` rows per
request and ``max_value_chars`` characters per text value (413), explanations per caller and queue
(`limits`, 429 with ``Retry-After``). Rows that can be neither stored nor spooled are never
answered 200: the request gets 503 (fail closed).

Every error is a JSON body ``{"error_code", "message"}``; a 500 is a bug and says only that it
was logged. The model of each served version is loaded once per worker (`ModelCache`), with the
project's skops allowlist (`model_files.load_mlflow_sklearn`), never MLflow's own loader.

With ``batch_window_ms`` > 0 and a threaded worker, concurrent requests are scored together
(`MicroBatcher`): the first waits at most the window, and only while other requests are on
their way, so a lone request is never delayed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from mlflow_governance.scoring import DECISION_THRESHOLD, score
from mlflow_governance.sidecar import ServeOptions, access, bodies, gate, limits, payloads
from mlflow_governance.sidecar.metrics import Metrics

log = logging.getLogger(__name__)
JSON = "application/json"
# Rows one micro-batch scores at most: predict's cost per row stays flat up to a few hundred rows
# (a gradient boosting pipeline: 5.9 ms for 100, 8.5 ms for 400, 19 ms for 800), beyond that a big
# batch only lengthens the wait of every request in it.
BATCH_MAX_ROWS = 500
# Rows one /explain request may ask about: an explanation costs 0.07 s (logistic regression) to 0.5 s
# (the histogram gradient boosting pipelines of the full search) of a core, one predict of 51,000
# masked rows, so 20 rows keep a request under about 10 s.
MAX_EXPLAIN_ROWS = 20


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version: the estimator and the signature columns it is checked against."""

    version: int
    estimator: Any
    columns: list[bodies.Column]


def _single_threaded(estimator: Any) -> None:
    """``n_jobs=1`` on every step that has it: a worker scores on one core (joblib ignores
    threadpoolctl, and a forest saved with ``n_jobs=-1`` would start a thread per core per call)."""
    try:
        params = estimator.get_params(deep=True)
    except Exception:  # noqa: BLE001 - not a scikit-learn estimator: leave it as it is
        return
    keys = {k: 1 for k, v in params.items() if (k == "n_jobs" or k.endswith("__n_jobs")) and v not in (None, 1)}
    if keys:
        try:
            estimator.set_params(**keys)
        except Exception:  # noqa: BLE001 - a step that refuses keeps its setting
            log.warning("could not set n_jobs=1 on %s", sorted(keys))


class ModelCache:
    """Models by version, loaded once per worker (the current and the previous version are kept)."""

    def __init__(self, model: str, keep: int = 2):
        self.model = model
        self.keep = keep
        self._models: dict[int, ServedModel] = {}
        self._lock = threading.Lock()

    def load(self, version: int) -> ServedModel:
        with self._lock:
            found = self._models.get(version)
            if found is not None:
                return found
            from mlflow_governance.model_files import load_mlflow_sklearn

            with tempfile.TemporaryDirectory(prefix="mlgov-serve-model-") as tmp:
                estimator, document = load_mlflow_sklearn(f"models:/{self.model}/{version}", Path(tmp) / "model")
            if not hasattr(estimator, "predict_proba"):
                raise ValueError(f"{self.model} version {version} has no predict_proba: the sidecar serves "
                                 "probabilistic classifiers")
            _single_threaded(estimator)
            served = ServedModel(version, estimator, bodies.columns_from_mlmodel(document))
            self._models[version] = served
            while len(self._models) > self.keep:
                self._models.pop(next(iter(self._models)))
            log.info("loaded %s version %s", self.model, version)
            return served


class ExplainerCache:
    """The explainer of each served version, built at the first ``/explain`` a worker answers for it
    (SHAP imported, the version's reference sample read through the registry) and kept while the
    version is served. One explanation at a time per worker: an explanation keeps a core busy, and
    SHAP's kernel explainer keeps state per call."""

    def __init__(self, model: str, fields_of: Callable[[int], dict[str, str]], keep: int = 2):
        self.model = model
        self.fields_of = fields_of
        self.keep = keep
        self._explainers: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _get(self, served: ServedModel) -> Any:
        from mlflow_governance import explanations

        found = self._explainers.get(served.version)
        if found is not None and found.model is served.estimator:
            return found
        try:
            fields = self.fields_of(served.version)
        except Exception as exc:  # noqa: BLE001 - the registry cannot be read: no reference, no explanation
            raise explanations.ExplanationUnavailable(
                f"the fields of {self.model} version {served.version} cannot be read: {gate._reason(exc)}") from exc
        explainer = explanations.for_version(self.model, served.version, served.estimator,
                                             [c.name for c in served.columns], fields)
        self._explainers[served.version] = explainer
        while len(self._explainers) > self.keep:
            self._explainers.pop(next(iter(self._explainers)))
        log.info("explainer of %s version %s ready (%s)", self.model, served.version, explainer.method)
        return explainer

    def explain(self, served: ServedModel, rows: bodies.Rows) -> tuple[Any, list[Any]]:
        with self._lock:
            explainer = self._get(served)
            return explainer, explainer.explain(rows.frame())


class _Slot:
    __slots__ = ("served", "rows", "result", "error", "done")

    def __init__(self, served: ServedModel, rows: bodies.Rows):
        self.served, self.rows = served, rows
        self.result: tuple[np.ndarray, np.ndarray] | None = None
        self.error: BaseException | None = None
        self.done = False

    def outcome(self) -> tuple[np.ndarray, np.ndarray]:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class MicroBatcher:
    """Scores concurrent requests of one worker in one ``predict`` (adaptive, leader-follower).

    A request that reaches scoring joins the queue; if no request is leading, it leads: it waits
    up to ``window`` seconds, but only while other requests have arrived and not yet reached
    scoring (so a lone request is never delayed), then scores every queued request of its model
    version at once and hands each its share. Requests that queue while a batch is scored form
    the next batch. A failing batch is scored request by request, so one bad request cannot fail
    the others.
    """

    def __init__(self, window_seconds: float, max_rows: int = BATCH_MAX_ROWS,
                 on_batch: Callable[[int], None] | None = None):
        self.window = window_seconds
        self.max_rows = max_rows
        self.on_batch = on_batch or (lambda n: None)
        self._cond = threading.Condition()
        self._queue: list[_Slot] = []
        self._leading = False
        self._coming = 0  # requests in the handler that have not reached scoring yet
        self._local = threading.local()

    def enter(self) -> None:
        with self._cond:
            self._coming += 1
        self._local.coming = True

    def leave(self) -> None:
        if getattr(self._local, "coming", False):
            self._arrived()

    def _arrived(self) -> None:
        self._local.coming = False
        with self._cond:
            self._coming -= 1
            self._cond.notify_all()

    def score(self, served: ServedModel, rows: bodies.Rows) -> tuple[np.ndarray, np.ndarray]:
        slot = _Slot(served, rows)
        if getattr(self._local, "coming", False):
            self._arrived()
        with self._cond:
            self._queue.append(slot)
            self._cond.notify_all()
            while self._leading and not slot.done:
                self._cond.wait()
            if slot.done:
                return slot.outcome()
            self._leading = True
            deadline = time.monotonic() + self.window
            while self._coming > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, rest, total = [slot], [], slot.rows.count
            for other in self._queue:
                if other is slot:
                    continue
                if other.served is served and total + other.rows.count <= self.max_rows:
                    batch.append(other)
                    total += other.rows.count
                else:
                    rest.append(other)
            self._queue = rest
        try:
            self.on_batch(len(batch))
            self._score_batch(served, batch)
        finally:
            with self._cond:
                for done in batch:
                    done.done = True
                self._leading = False
                self._cond.notify_all()
        return slot.outcome()

    @staticmethod
    def _score_batch(served: ServedModel, batch: list[_Slot]) -> None:
        if len(batch) == 1:
            one = batch[0]
            try:
                one.result = score(served.estimator, one.rows.frame())
            except Exception as exc:  # noqa: BLE001 - handed to the request that owns it
                one.error = exc
            return
        names = list(batch[0].rows.columns)
        merged = bodies.Rows({n: np.concatenate([s.rows.columns[n] for s in batch]) for n in names},
                             sum(s.rows.count for s in batch))
        try:
            prediction, probability = score(served.estimator, merged.frame())
        except Exception:  # noqa: BLE001 - find the request at fault: score each alone
            for one in batch:
                MicroBatcher._score_batch(served, [one])
            return
        start = 0
        for one in batch:
            end = start + one.rows.count
            one.result = (prediction[start:end], probability[start:end])
            start = end


def request_ids(n: int) -> list[str]:
    """``n`` new request ids: time-ordered UUIDs (version 7, RFC 9562) as 32 hex digits.

    The first 48 bits are the time in milliseconds, the rest (74 bits) random from one read of
    the OS's random source. Time order keeps inserts into the payload table's unique index at
    its right edge: a quarter of the cost of random UUID4 keys per row on SQLite, and the same
    kind of saving on PostgreSQL's B-trees.
    """
    stamp = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    raw = bytearray(os.urandom(16 * n))
    raw[0::16] = bytes([stamp[0]]) * n
    for k in range(1, 6):
        raw[k::16] = bytes([stamp[k]]) * n
    raw[6::16] = bytes((b & 0x0F) | 0x70 for b in raw[6::16])  # version 7
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # RFC 9562 variant
    text = raw.hex()
    return [text[i:i + 32] for i in range(0, 32 * n, 32)]


def authenticator(options: ServeOptions) -> Any:
    """How the workers check callers: `access.NoAuthentication` for ``--no-auth``, else the governance
    server of the registry URI (ValueError when the registry is local: no server to ask)."""
    if options.no_auth:
        return access.NoAuthentication()
    from mlflow_governance import environment_variables as ev
    from mlflow_governance.sidecar import governance_server

    uri = governance_server()
    if uri is None:
        raise ValueError("authentication needs a governance server to check callers against (MLFLOW_TRACKING_URI "
                         "or MLFLOW_REGISTRY_URI = its http(s):// URL); on a local registry pass --no-auth "
                         "(development only: nobody is authenticated)")
    return access.ServerAuthentication(uri, options.model, options.auth_cache_seconds,
                                       max_failures=ev.MLGOV_SIGNIN_MAX_FAILURES.get(),
                                       lockout_seconds=float(ev.MLGOV_SIGNIN_LOCKOUT_SECONDS.get()))


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, allow_nan=False), status=status, mimetype=JSON, headers=headers)


def _error(error_code: str, message: str, status: int, **extra: Any) -> Response:
    return _json({"error_code": error_code, "message": message, **extra}, status)


class Sidecar:
    """The parts of one worker's app: gate, payload writer, metrics, models, batcher."""

    def __init__(self, options: ServeOptions, *, client: Any = None, start: bool = True, checker: Any = None):
        self.options = options
        self.access = checker if checker is not None else authenticator(options)
        self.explain_admission = limits.ExplainAdmission(options.explain_per_minute, options.explain_queue)
        self.metrics = Metrics()
        self.models = ModelCache(options.model)
        self.writer = payloads.PayloadWriter(
            options.payload_url or "", options.spool_dir or "mlgov-spool", batch_rows=options.batch_rows,
            flush_seconds=options.flush_seconds, on_logged=self.metrics.rows_logged.inc,
            on_spool=self.metrics.spool_rows.set)
        self.gate = gate.Gate(options, self.models.load, client=client, payload_engine=self.writer.engine,
                              on_snapshot=self._observe)
        self.batcher = MicroBatcher(options.batch_window_ms / 1000.0, on_batch=self.metrics.batch_requests.observe) \
            if options.batch_window_ms > 0 else None
        self.explainers = ExplainerCache(
            options.model, lambda v: (self.gate.client.status(options.model, v).get("version") or {}).get("fields") or {})
        self.gate.refresh()
        if start:
            self.writer.start()
            self.gate.start()

    def _observe(self, snap: gate.Snapshot) -> None:
        verdict = snap.verdict
        self.metrics.serving.set(1.0 if verdict is not None and verdict.serving else 0.0)
        self.metrics.served_version.set(float(verdict.version or 0) if verdict is not None else 0.0)
        self.metrics.evaluation(snap.last_evaluation)

    def close(self) -> None:
        self.gate.stop()
        self.writer.close()

    def score(self, served: ServedModel, rows: bodies.Rows) -> tuple[np.ndarray, np.ndarray]:
        if self.batcher is None:
            return score(served.estimator, rows.frame())
        return self.batcher.score(served, rows)

    # --- /status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        snap, refusal = self.gate.current()
        verdict = snap.verdict
        evaluation = snap.last_evaluation
        return {
            "model": self.options.model,
            "version": verdict.version if verdict else self.options.version,
            "mode": self.options.mode,
            "staging": self.options.staging,
            "alias": self.options.alias,
            "stage": verdict.stage if verdict else None,
            "usability": verdict.usability if verdict else None,
            "production_version": verdict.production_version if verdict else None,
            "serving": refusal is None,
            "refusal": None if refusal is None else {"status": refusal.status, **refusal.body()},
            "usability_set_by": verdict.set_by if verdict else None,
            "last_evaluation": None if evaluation is None else {
                k: evaluation.get(k) for k in ("seq", "evaluated_at", "rows", "verdict", "reason", "figures",
                                               "breaches", "run_id", "usability_action", "config_digest")},
            "registry": {"read_ok": snap.error is None and snap.read_ok_at is not None,
                         "last_read": gate._iso(snap.read_ok_ms), "error": snap.error,
                         "failing_since": gate._iso(snap.failing_since_ms),
                         "cache_seconds": self.options.usability_cache_seconds},
            "payloads": self.writer.state(),
            "authentication": self.access.describe(),
            "caller": getattr(g.get("mlgov_caller"), "user", None),
            "limits": {"max_rows": self.options.max_rows, "max_value_chars": self.options.max_value_chars,
                       "max_body_bytes": self.options.max_body_bytes,
                       "explain_per_minute": self.options.explain_per_minute,
                       "explain_queue": self.options.explain_queue},
            "endpoint": request.url_root.rstrip("/") + "/invocations",
            "worker_pid": os.getpid(),
        }


FEEDBACK_IDS_SHOWN = 20  # request ids named in a 409 answer
DRAIN_FACTOR = 8  # an over-size body up to this many times the limit is read and dropped
DRAIN_CHUNK = 65536


def _too_large(limit: int) -> bodies.BodyError:
    return bodies.BodyError("BODY_TOO_LARGE", f"the body is larger than the limit of {limit} bytes", 413)


def _drain(limit: int) -> bool:
    """Read and drop the rest of an over-size body (bounded), so that a server closing the
    connection (sync workers, HTTP/1.0) does not reset it before the client has read our 413;
    False when it is too large to drain here (a keep-alive worker then discards it itself)."""
    budget = max(DRAIN_FACTOR * limit, 16 * 1024 * 1024)
    length = request.content_length
    if length is not None and length > budget:
        return False
    read = 0
    while read <= budget:
        chunk = request.stream.read(DRAIN_CHUNK)
        if not chunk:
            return True
        read += len(chunk)
    return False


def _read_body(limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise _too_large(limit)
    return raw


def create_app(options: ServeOptions, *, client: Any = None, start_threads: bool = True,
               checker: Any = None) -> Flask:
    """The sidecar's Flask app for ``options`` (one per gunicorn worker; see the module docstring).

    Reads governance once before returning (so the first request is decided), then keeps reading
    it in a background thread; ``client`` replaces the `GovernanceClient` and ``checker`` the
    authenticator (tests), ``start_threads`` False leaves the gate and payload threads unstarted
    (tests drive them).
    """
    problems = options.problems()
    if problems:
        raise ValueError("; ".join(problems))
    options = options if options.payload_url and options.spool_dir else options.resolved()
    sidecar = Sidecar(options, client=client, start=start_threads, checker=checker)
    app = Flask("mlflow_governance.sidecar")
    app.extensions["mlgov_sidecar"] = sidecar
    metrics = sidecar.metrics

    @app.before_request
    def authorize() -> Response | None:
        """The route table's rule, before any handler (`access`): the caller goes on ``g.mlgov_caller``."""
        rule = access.rule_of(request.method, request.path)
        if rule is None or rule == access.PUBLIC:
            return None  # /health, or no such route: Flask answers 404/405 without reading anything
        try:
            caller = sidecar.access.caller(request.headers.get("Authorization"), request.remote_addr)
            refusal = access.refusal_for(caller, rule, options.model)
        except access.Refused as refused:
            refusal = refused
        if refusal is not None:
            metrics.refused({401: "unauthenticated", 403: "forbidden"}.get(refusal.status, "authentication"))
            _drain(options.max_body_bytes)  # the body is not needed, but read so the connection stays clean
            metrics.answered(request.path.strip("/").replace("/", "_") or "root", refusal.status, 0.0)
            return _json(refusal.body(), refusal.status, refusal.headers)
        g.mlgov_caller = caller
        return None

    if options.no_auth:
        @app.after_request
        def say_unauthenticated(response: Response) -> Response:
            response.headers[access.NO_AUTH_HEADER] = access.NO_AUTH_TEXT
            return response

    def caller_name() -> str | None:
        return g.mlgov_caller.user

    def timed(endpoint: str, handler: Callable[[], Response]) -> Response:
        started = time.perf_counter()
        try:
            response = handler()
        except bodies.BodyError as exc:
            metrics.refused("too_large" if exc.status == 413 else "bad_request")
            if exc.status == 413:
                _drain(options.max_body_bytes)
            response = _error(exc.error_code, exc.message, exc.status)
        metrics.answered(endpoint, response.status_code, time.perf_counter() - started)
        return response

    @app.post("/invocations")
    def invocations() -> Response:
        if sidecar.batcher is not None:
            sidecar.batcher.enter()
        try:
            return timed("invocations", _invocations)
        finally:
            if sidecar.batcher is not None:
                sidecar.batcher.leave()

    def _invocations() -> Response:
        snap, refusal = sidecar.gate.current()
        if refusal is not None:
            metrics.refused(refusal.reason)
            _drain(options.max_body_bytes)  # the body is not needed, but read so the connection stays clean
            return _json(refusal.body(), refusal.status)
        served: ServedModel = snap.served
        raw = _read_body(options.max_body_bytes)
        document = bodies.load_json(raw, request.headers.get("Content-Type"), options.max_body_bytes)
        rows = bodies.parse_invocation(document, served.columns, options.max_rows, options.max_value_chars)
        unavailable = sidecar.writer.refusal()
        if unavailable is not None:  # fail closed: a row that cannot be kept is not scored
            return _payloads_unavailable(unavailable)
        try:
            prediction, probability = sidecar.score(served, rows)
        except ValueError as exc:
            metrics.refused("unscorable")
            return _error("UNSCORABLE_INPUT", f"the model cannot score these rows: {str(exc)[:300]}", 400)
        ids = request_ids(rows.count)
        try:
            sidecar.writer.submit(payloads.Scored(ids, int(time.time() * 1000), options.model, served.version,
                                                  options.staging, rows.columns, prediction, probability,
                                                  caller=caller_name()))
        except payloads.PayloadsUnavailable as exc:
            return _payloads_unavailable(str(exc))
        metrics.rows_scored.inc(rows.count)
        body: dict[str, Any] = {"predictions": prediction.tolist(), "probabilities": probability.tolist(),
                                "request_ids": ids, "model": options.model, "version": served.version}
        if options.staging:
            body["staging"] = True
        return _json(body)

    def _payloads_unavailable(reason: str) -> Response:
        metrics.refused("payloads_unavailable")
        return _error("PAYLOADS_UNAVAILABLE", f"{reason}: nothing was scored, try again later", 503)

    @app.post("/explain")
    def explain() -> Response:
        return timed("explain", _explain)

    def _explain() -> Response:
        from mlflow_governance import explanations

        snap, refusal = sidecar.gate.current()
        if refusal is not None:
            metrics.refused(refusal.reason)
            _drain(options.max_body_bytes)
            return _json(refusal.body(), refusal.status)
        served: ServedModel = snap.served
        raw = _read_body(options.max_body_bytes)
        document = bodies.load_json(raw, request.headers.get("Content-Type"), options.max_body_bytes)
        rows = bodies.parse_invocation(document, served.columns, max_value_chars=options.max_value_chars)
        if rows.count > MAX_EXPLAIN_ROWS:
            raise bodies.BodyError("TOO_MANY_ROWS", f"at most {MAX_EXPLAIN_ROWS} rows per /explain request (an "
                                   f"explanation costs far more than a score); this one has {rows.count}: split it")
        started = time.perf_counter()
        try:
            with sidecar.explain_admission.admitted(caller_name()):
                explainer, found = sidecar.explainers.explain(served, rows)
        except limits.Busy as exc:
            metrics.refused("explain_busy")
            return _json({"error_code": "TOO_MANY_EXPLANATIONS", "message": exc.message}, 429,
                         {"Retry-After": str(exc.retry_after)})
        except explanations.ExplanationUnavailable as exc:
            metrics.refused("explanation_unavailable")
            return _error("EXPLANATION_UNAVAILABLE", f"{options.model} version {served.version} cannot be "
                          f"explained: {gate._reason(exc)}", 503)
        except ValueError as exc:
            metrics.refused("unscorable")
            return _error("UNSCORABLE_INPUT", f"the model cannot score these rows: {str(exc)[:300]}", 400)
        metrics.rows_explained.inc(rows.count)
        body: dict[str, Any] = {
            "explanations": [e.to_dict() for e in found], "model": options.model, "version": served.version,
            "method": explainer.method, "output": explanations.OUTPUT, "threshold": DECISION_THRESHOLD,
            "background_rows": len(explainer.background), "additivity_tolerance": explanations.ADDITIVITY_TOLERANCE,
            "actionable_features": list(explainer.actionable), "seconds": round(time.perf_counter() - started, 4)}
        if options.staging:
            body["staging"] = True
        return _json(body)

    @app.post("/feedback")
    def feedback() -> Response:
        return timed("feedback", _feedback)

    def _feedback() -> Response:
        raw = _read_body(options.max_body_bytes)
        items = bodies.parse_feedback(bodies.load_json(raw, request.headers.get("Content-Type"),
                                                       options.max_body_bytes), max_items=options.max_rows)
        try:
            accepted, unknown = sidecar.writer.record_feedback(items, labeller=caller_name())
        except payloads.FeedbackConflict as exc:
            metrics.refused("feedback_conflict")
            shown = exc.ids[:FEEDBACK_IDS_SHOWN]
            return _error("FEEDBACK_EXISTS", f"{len(exc.ids)} request id(s) of this request already have a label or "
                          "are named twice: nothing of this request was stored (a label is replaced only through "
                          "POST /feedback/correct, with a reason)", 409, request_ids=shown)
        except payloads.PayloadDatabaseDown:
            metrics.refused("payload_database_unavailable")
            return _error("PAYLOAD_DATABASE_UNAVAILABLE", "the payload database cannot be reached: the feedback was "
                          "not recorded, send it again later", 503)
        metrics.feedback.inc(accepted)
        return _json({"accepted": accepted, "unknown": unknown, "labeller": caller_name()})

    @app.post("/feedback/correct")
    def feedback_correct() -> Response:
        return timed("feedback_correct", _feedback_correct)

    def _feedback_correct() -> Response:
        raw = _read_body(options.max_body_bytes)
        request_id, label, reason = bodies.parse_correction(
            bodies.load_json(raw, request.headers.get("Content-Type"), options.max_body_bytes))
        try:
            previous = sidecar.writer.correct_feedback(request_id, label, caller_name(), reason)
        except KeyError:
            return _error("UNKNOWN_REQUEST_ID", f"no scored row has the request id {request_id!r}", 404)
        except payloads.PayloadDatabaseDown:
            metrics.refused("payload_database_unavailable")
            return _error("PAYLOAD_DATABASE_UNAVAILABLE", "the payload database cannot be reached: nothing was "
                          "corrected, send it again later", 503)
        return _json({"request_id": request_id, "label": label, "previous_label": previous,
                      "corrected_by": caller_name(), "reason": reason})

    @app.get("/health")
    def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/status")
    def status() -> Response:
        return timed("status", lambda: _json(sidecar.status()))

    @app.get("/metrics")
    def metrics_page() -> Response:
        text, content_type = metrics.render()
        return Response(text, status=200, content_type=content_type)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = {404: "ENDPOINT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "BODY_TOO_LARGE"}.get(
            exc.code or 400, "BAD_REQUEST")
        if exc.code == 413:
            metrics.refused("too_large")
            _drain(options.max_body_bytes)
            return _error(code, f"the body is larger than the limit of {options.max_body_bytes} bytes", 413)
        return _error(code, exc.description or exc.name, exc.code or 400)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        metrics.refused("internal_error")
        return _error("INTERNAL_ERROR", "internal error in the scoring sidecar (logged on the server)", 500)

    return app
