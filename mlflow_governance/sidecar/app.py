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
  (`mlflow_governance.scoring.explanations`). Nothing goes to the payload table: an explanation is a
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
was logged.

This module is the Flask side: `create_app`, the ``before_request`` rule check and the route
handlers (`Routes`). What they work with is the worker's `parts.Sidecar`: the loaded models and
explainers (`models`), the micro-batcher (`batching`), the gate, the payload writer and the
metrics; request ids come from `ids`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from mlflow_governance.scoring.decision import DECISION_THRESHOLD
from mlflow_governance.sidecar import ServeOptions, access, bodies, gate, limits, payloads
from mlflow_governance.sidecar.ids import request_ids
from mlflow_governance.sidecar.models import ModelCache, ServedModel
from mlflow_governance.sidecar.parts import Sidecar, authenticator

# Also imported from here: `ModelCache`, `ServedModel` (models), `Sidecar`, `authenticator` (parts).
__all__ = ["MAX_EXPLAIN_ROWS", "ModelCache", "Routes", "ServedModel", "Sidecar", "authenticator", "create_app"]

log = logging.getLogger(__name__)
JSON = "application/json"
# Rows one /explain request may ask about: an explanation costs 0.07 s (logistic regression) to 0.5 s
# (the histogram gradient boosting pipelines of the full search) of a core, one predict of 51,000
# masked rows, so 20 rows keep a request under about 10 s.
MAX_EXPLAIN_ROWS = 20
FEEDBACK_IDS_SHOWN = 20  # request ids named in a 409 answer
DRAIN_FACTOR = 8  # an over-size body up to this many times the limit is read and dropped
DRAIN_CHUNK = 65536


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
    Routes(sidecar).register(app)
    return app


# --- answers and bodies ----------------------------------------------------------------------


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, allow_nan=False), status=status, mimetype=JSON, headers=headers)


def _error(error_code: str, message: str, status: int, **extra: Any) -> Response:
    return _json({"error_code": error_code, "message": message, **extra}, status)


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


def _caller() -> str | None:
    """The user `Routes.authorize` let in (None: ``--no-auth``)."""
    return g.mlgov_caller.user


def say_unauthenticated(response: Response) -> Response:
    """Every answer of a ``--no-auth`` sidecar says that nobody is authenticated."""
    response.headers[access.NO_AUTH_HEADER] = access.NO_AUTH_TEXT
    return response


# --- the routes ------------------------------------------------------------------------------


class Routes:
    """The route handlers of one worker's app, over its `Sidecar`; `register` adds them."""

    def __init__(self, sidecar: Sidecar):
        self.sidecar = sidecar
        self.options = sidecar.options
        self.metrics = sidecar.metrics

    def register(self, app: Flask) -> None:
        app.before_request(self.authorize)
        if self.options.no_auth:
            app.after_request(say_unauthenticated)
        app.add_url_rule("/invocations", "invocations", self.invocations, methods=["POST"])
        app.add_url_rule("/explain", "explain", self.explain, methods=["POST"])
        app.add_url_rule("/feedback", "feedback", self.feedback, methods=["POST"])
        app.add_url_rule("/feedback/correct", "feedback_correct", self.feedback_correct, methods=["POST"])
        app.add_url_rule("/health", "health", self.health, methods=["GET"])
        app.add_url_rule("/status", "status", self.status, methods=["GET"])
        app.add_url_rule("/metrics", "metrics_page", self.metrics_page, methods=["GET"])
        app.register_error_handler(HTTPException, self.http_error)
        app.register_error_handler(Exception, self.internal_error)

    def authorize(self) -> Response | None:
        """The route table's rule, before any handler (`access`): the caller goes on ``g.mlgov_caller``."""
        rule = access.rule_of(request.method, request.path)
        if rule is None or rule == access.PUBLIC:
            return None  # /health, or no such route: Flask answers 404/405 without reading anything
        try:
            caller = self.sidecar.access.caller(request.headers.get("Authorization"), request.remote_addr)
            refusal = access.refusal_for(caller, rule, self.options.model)
        except access.Refused as refused:
            refusal = refused
        if refusal is not None:
            self.metrics.refused({401: "unauthenticated", 403: "forbidden"}.get(refusal.status, "authentication"))
            _drain(self.options.max_body_bytes)  # the body is not needed, but read so the connection stays clean
            self.metrics.answered(request.path.strip("/").replace("/", "_") or "root", refusal.status, 0.0)
            return _json(refusal.body(), refusal.status, refusal.headers)
        g.mlgov_caller = caller
        return None

    def timed(self, endpoint: str, handler: Callable[[], Response]) -> Response:
        started = time.perf_counter()
        try:
            response = handler()
        except bodies.BodyError as exc:
            self.metrics.refused("too_large" if exc.status == 413 else "bad_request")
            if exc.status == 413:
                _drain(self.options.max_body_bytes)
            response = _error(exc.error_code, exc.message, exc.status)
        self.metrics.answered(endpoint, response.status_code, time.perf_counter() - started)
        return response

    # --- helpers of the handlers ---

    def _document(self) -> Any:
        """The request's JSON body, read up to ``max_body_bytes`` (`bodies.load_json`)."""
        limit = self.options.max_body_bytes
        return bodies.load_json(_read_body(limit), request.headers.get("Content-Type"), limit)

    def _served_rows(self, max_rows: int | None) -> tuple[ServedModel, bodies.Rows] | Response:
        """The model the gate lets this request use and the request's rows (at most ``max_rows``),
        or the gate's refusal."""
        snap, refusal = self.sidecar.gate.current()
        if refusal is not None:
            self.metrics.refused(refusal.reason)
            _drain(self.options.max_body_bytes)  # the body is not needed, but read so the connection stays clean
            return _json(refusal.body(), refusal.status)
        served: ServedModel = snap.served
        return served, bodies.parse_invocation(self._document(), served.columns, max_rows, self.options.max_value_chars)

    def _unscorable(self, exc: ValueError) -> Response:
        self.metrics.refused("unscorable")
        return _error("UNSCORABLE_INPUT", f"the model cannot score these rows: {str(exc)[:300]}", 400)

    def _payloads_unavailable(self, reason: str) -> Response:
        self.metrics.refused("payloads_unavailable")
        return _error("PAYLOADS_UNAVAILABLE", f"{reason}: nothing was scored, try again later", 503)

    def _payload_database_down(self, outcome: str) -> Response:
        self.metrics.refused("payload_database_unavailable")
        return _error("PAYLOAD_DATABASE_UNAVAILABLE", f"the payload database cannot be reached: {outcome}, send it "
                      "again later", 503)

    def _answer(self, body: dict[str, Any]) -> Response:
        """A scoring or explanation answer (``"staging": true`` in staging mode)."""
        if self.options.staging:
            body["staging"] = True
        return _json(body)

    # --- POST /invocations ---

    def invocations(self) -> Response:
        if self.sidecar.batcher is not None:
            self.sidecar.batcher.enter()
        try:
            return self.timed("invocations", self._invocations)
        finally:
            if self.sidecar.batcher is not None:
                self.sidecar.batcher.leave()

    def _invocations(self) -> Response:
        options, sidecar = self.options, self.sidecar
        admitted = self._served_rows(options.max_rows)
        if isinstance(admitted, Response):
            return admitted
        served, rows = admitted
        unavailable = sidecar.writer.refusal()
        if unavailable is not None:  # fail closed: a row that cannot be kept is not scored
            return self._payloads_unavailable(unavailable)
        try:
            prediction, probability = sidecar.score(served, rows)
        except ValueError as exc:
            return self._unscorable(exc)
        ids = request_ids(rows.count)
        try:
            sidecar.writer.submit(payloads.Scored(ids, int(time.time() * 1000), options.model, served.version,
                                                  options.staging, rows.columns, prediction, probability,
                                                  caller=_caller()))
        except payloads.PayloadsUnavailable as exc:
            return self._payloads_unavailable(str(exc))
        self.metrics.rows_scored.inc(rows.count)
        return self._answer({"predictions": prediction.tolist(), "probabilities": probability.tolist(),
                             "request_ids": ids, "model": options.model, "version": served.version})

    # --- POST /explain ---

    def explain(self) -> Response:
        return self.timed("explain", self._explain)

    def _explain(self) -> Response:
        from mlflow_governance.scoring import explanations

        options, sidecar = self.options, self.sidecar
        admitted = self._served_rows(None)
        if isinstance(admitted, Response):
            return admitted
        served, rows = admitted
        if rows.count > MAX_EXPLAIN_ROWS:
            raise bodies.BodyError("TOO_MANY_ROWS", f"at most {MAX_EXPLAIN_ROWS} rows per /explain request (an "
                                   f"explanation costs far more than a score); this one has {rows.count}: split it")
        started = time.perf_counter()
        try:
            with sidecar.explain_admission.admitted(_caller()):
                explainer, found = sidecar.explainers.explain(served, rows)
        except limits.Busy as exc:
            self.metrics.refused("explain_busy")
            return _json({"error_code": "TOO_MANY_EXPLANATIONS", "message": exc.message}, 429,
                         {"Retry-After": str(exc.retry_after)})
        except explanations.ExplanationUnavailable as exc:
            self.metrics.refused("explanation_unavailable")
            return _error("EXPLANATION_UNAVAILABLE", f"{options.model} version {served.version} cannot be "
                          f"explained: {gate._reason(exc)}", 503)
        except ValueError as exc:
            return self._unscorable(exc)
        self.metrics.rows_explained.inc(rows.count)
        return self._answer({
            "explanations": [e.to_dict() for e in found], "model": options.model, "version": served.version,
            "method": explainer.method, "output": explanations.OUTPUT, "threshold": DECISION_THRESHOLD,
            "background_rows": len(explainer.background), "additivity_tolerance": explanations.ADDITIVITY_TOLERANCE,
            "actionable_features": list(explainer.actionable), "seconds": round(time.perf_counter() - started, 4)})

    # --- POST /feedback, POST /feedback/correct ---

    def feedback(self) -> Response:
        return self.timed("feedback", self._feedback)

    def _feedback(self) -> Response:
        items = bodies.parse_feedback(self._document(), max_items=self.options.max_rows)
        try:
            accepted, unknown = self.sidecar.writer.record_feedback(items, labeller=_caller())
        except payloads.FeedbackConflict as exc:
            self.metrics.refused("feedback_conflict")
            shown = exc.ids[:FEEDBACK_IDS_SHOWN]
            return _error("FEEDBACK_EXISTS", f"{len(exc.ids)} request id(s) of this request already have a label or "
                          "are named twice: nothing of this request was stored (a label is replaced only through "
                          "POST /feedback/correct, with a reason)", 409, request_ids=shown)
        except payloads.PayloadDatabaseDown:
            return self._payload_database_down("the feedback was not recorded")
        self.metrics.feedback.inc(accepted)
        return _json({"accepted": accepted, "unknown": unknown, "labeller": _caller()})

    def feedback_correct(self) -> Response:
        return self.timed("feedback_correct", self._feedback_correct)

    def _feedback_correct(self) -> Response:
        request_id, label, reason = bodies.parse_correction(self._document())
        try:
            previous = self.sidecar.writer.correct_feedback(request_id, label, _caller(), reason)
        except KeyError:
            return _error("UNKNOWN_REQUEST_ID", f"no scored row has the request id {request_id!r}", 404)
        except payloads.PayloadDatabaseDown:
            return self._payload_database_down("nothing was corrected")
        return _json({"request_id": request_id, "label": label, "previous_label": previous,
                      "corrected_by": _caller(), "reason": reason})

    # --- GET /health, /status, /metrics ---

    def health(self) -> Response:
        return _json({"status": "ok"})

    def status(self) -> Response:
        return self.timed("status", self._status)

    def _status(self) -> Response:
        caller = getattr(g.get("mlgov_caller"), "user", None)
        return _json(self.sidecar.status(caller, request.url_root.rstrip("/") + "/invocations"))

    def metrics_page(self) -> Response:
        text, content_type = self.metrics.render()
        return Response(text, status=200, content_type=content_type)

    # --- errors ---

    def http_error(self, exc: HTTPException) -> Response:
        code = {404: "ENDPOINT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "BODY_TOO_LARGE"}.get(
            exc.code or 400, "BAD_REQUEST")
        if exc.code == 413:
            self.metrics.refused("too_large")
            _drain(self.options.max_body_bytes)
            return _error(code, f"the body is larger than the limit of {self.options.max_body_bytes} bytes", 413)
        return _error(code, exc.description or exc.name, exc.code or 400)

    def internal_error(self, exc: Exception) -> Response:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        self.metrics.refused("internal_error")
        return _error("INTERNAL_ERROR", "internal error in the scoring sidecar (logged on the server)", 500)
