"""The governance gate: which version a sidecar worker may score with right now, and if none, why.

`decide` is the rule, a pure function of the model's governance status:

* production mode (``--alias production``, the default) serves the version the production alias
  points at, and only while it is Ready to Use; ``--version N`` pins that version and serves it
  only while the alias points at it. Because the alias is looked up at every read, a new version
  promoted to production is followed without a restart;
* staging mode (``--version N --staging``) serves a version from Approved for Validation to Pre
  Production Review, never one that is Ready to Use (production is never answered in staging);
* usability reject (a monitor's breach, or a person's reject) → 423 "model execution not
  allowed", naming the monitor, its value and its threshold (the latest
  ``mlgov_monitor_evaluation`` row that turned usability red since the last accept), or, for a
  manual reject, the actor and comment from the audit trail;
* a decommissioned version → 410; a version in no servable stage → 409 (staging) or 503.

`Gate` reads the registry from a background thread of each worker every
``usability_cache_seconds`` (so replicas agree within that time and no request waits for the
registry) and keeps the model of the version to serve loaded (`loader`) before switching to it.
When the registry cannot be read, the last answer stands until it is older than twice the cache
lifetime (one lifetime of failed reads), then the gate fails closed: 503 naming the reason, until
a read succeeds again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from mlflow_governance.core import workflow as wf
from mlflow_governance.sidecar import ServeOptions, schema

log = logging.getLogger(__name__)

STAGING_STAGES = wf.STAGING_STAGES  # the lifecycle table's, named here for the gate's readers
AUDIT_ROWS = 200
RETRY_SECONDS = 1.0
REMOTE_TIMEOUT_SECONDS = 2.0  # at least this long for a governance server to answer a read


@dataclass(frozen=True)
class Refusal:
    """Why nothing is scored: HTTP status, error code, message, a metrics reason, details."""

    status: int
    error_code: str
    message: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message, **self.details}


@dataclass(frozen=True)
class Verdict:
    """What governance says about the served model at one read."""

    version: int | None
    stage: str | None = None
    usability: str | None = None
    production_version: int | None = None
    refusal: Refusal | None = None
    set_by: dict[str, Any] | None = None

    @property
    def serving(self) -> bool:
        return self.refusal is None and self.version is not None


class NotServable(Exception):
    """Governance does not let this sidecar serve (``mlgov serve`` exits 3; 4 for an unknown model)."""

    def __init__(self, message: str, reason: str = "not_servable"):
        super().__init__(message)
        self.reason = reason


def _not_servable(message: str, status: int = 503, code: str = "MODEL_NOT_SERVABLE", reason: str = "not_servable",
                  **details: Any) -> Refusal:
    return Refusal(status, code, message, reason, details)


def _decommissioned(model: str, version: int) -> Refusal:
    return Refusal(410, "MODEL_DECOMMISSIONED", f"{model} version {version} is decommissioned: it is not served "
                   "any more", "decommissioned", {"model": model, "version": version})


def decide(options: ServeOptions, status: dict[str, Any], previous: int | None = None) -> Verdict:
    """The verdict for ``options`` from ``GovernanceClient.status(model)`` (``previous``: the
    version served until now, to answer 410 once its decommissioning has dropped the alias)."""
    model = options.model
    if not status.get("governed", True):
        return Verdict(None, refusal=_not_servable(f"{model} is not a governed model: the sidecar serves governed "
                                                   "models only"))
    versions = {int(v["version"]): v for v in status.get("versions") or []}
    production = status.get("production_version")
    production = int(production) if production is not None else None
    alias = status.get("production_alias") or options.alias or "production"
    if options.staging:
        return _decide_staging(options, versions, production)
    version = options.version if options.version is not None else production
    if version is None:
        if previous is not None and (versions.get(previous) or {}).get("stage") == wf.DECOMMISSIONED:
            return Verdict(previous, wf.DECOMMISSIONED, production_version=None,
                           refusal=_decommissioned(model, previous))
        return Verdict(None, production_version=None, refusal=_not_servable(
            f"{model} has no production version: the {alias!r} alias points at no version (none is Ready to Use)"))
    verdict = _listed(model, version, versions, production)
    if verdict.refusal is not None:
        return verdict
    stage, usability = verdict.stage, verdict.usability
    if version != production or stage != wf.READY_TO_USE:
        where = f"version {production}" if production is not None else "no version"
        return replace(verdict, refusal=_not_servable(
            f"{model} version {version} is not in production (stage {stage}; the {alias!r} alias points at {where}): "
            "production mode serves only the Ready to Use version of the production alias"))
    if usability != wf.USABILITY_ACCEPT:
        return replace(verdict, refusal=Refusal(
            423, "MODEL_EXECUTION_NOT_ALLOWED",
            f"model execution not allowed: {model} version {version} has usability {usability}",
            "usability_reject", {"model": model, "version": version, "usability": usability}))
    return verdict


def _decide_staging(options: ServeOptions, versions: dict[int, dict[str, Any]], production: int | None) -> Verdict:
    model, version = options.model, int(options.version or 0)
    verdict = _listed(model, version, versions, production)
    if verdict.refusal is not None:
        return verdict
    stage = verdict.stage
    if version == production or stage == wf.READY_TO_USE:
        return replace(verdict, refusal=_not_servable(
            f"{model} version {version} is Ready to Use: a staging sidecar never answers for production "
            "(serve it with --alias production)", 409, "NOT_IN_STAGING", "not_in_staging"))
    if stage not in STAGING_STAGES:
        return replace(verdict, refusal=_not_servable(
            f"{model} version {version} is in {stage}: staging serves a version from {STAGING_STAGES[0]} to "
            f"{STAGING_STAGES[-1]}", 409, "NOT_IN_STAGING", "not_in_staging"))
    return verdict


def _listed(model: str, version: int, versions: dict[int, dict[str, Any]], production: int | None) -> Verdict:
    """The verdict on ``version`` from its entry in the governed workflow alone, for both modes:
    refused when it is not in the workflow (503) or is decommissioned (410), else serving, for the
    mode's own rule (`decide`, `_decide_staging`) to refuse with `dataclasses.replace`."""
    entry = versions.get(version)
    if entry is None:
        return Verdict(version, production_version=production, refusal=_not_servable(
            f"{model} version {version} is not in the governed workflow"))
    stage, usability = entry.get("stage"), entry.get("usability")
    refusal = _decommissioned(model, version) if stage == wf.DECOMMISSIONED else None
    return Verdict(version, stage, usability, production, refusal)


# --- why usability is reject ---------------------------------------------------------------


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def _number(value: Any) -> str:
    return "undefined" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def evaluation_row(engine: sa.Engine, model: str, version: int, rejecting: bool = False,
                   since_ms: int = 0) -> dict[str, Any] | None:
    """The newest ``mlgov_monitor_evaluation`` row of a version (only one that turned usability red
    at or after ``since_ms`` when ``rejecting``), JSON columns decoded."""
    e = schema.evaluation
    query = sa.select(e).where(e.c.model == model, e.c.version == int(version))
    if rejecting:
        query = query.where(e.c.usability_action == wf.USABILITY_REJECT, e.c.ts >= int(since_ms))
    with engine.connect() as conn:
        row = conn.execute(query.order_by(e.c.seq.desc()).limit(1)).first()
    if row is None:
        return None
    out = dict(row._mapping)
    for key in ("figures", "breaches"):
        try:
            out[key] = json.loads(out[key]) if out.get(key) else ([] if key == "breaches" else {})
        except ValueError:
            pass
    out["evaluated_at"] = _iso(out.get("ts"))
    return out


def reject_story(model: str, version: int, audit_rows: list[dict[str, Any]],
                 find_evaluation: Callable[[int], dict[str, Any] | None]) -> tuple[str, dict[str, Any]]:
    """(423 message, who set usability to reject) from the audit trail and the monitor evaluations.

    The reject counts from the last time the version became usable (its promotion or an accept);
    a monitor evaluation that turned usability red since then names the monitor, else the audit
    row of the reject names the person and their comment.
    """
    mine = [r for r in audit_rows if r.get("version") == version and r.get("outcome") == "allowed"]
    usable = [r for r in mine if r.get("action") == wf.ACCEPT
              or (r.get("to_stage") == wf.READY_TO_USE and r.get("from_stage") != wf.READY_TO_USE)]
    since = int(usable[-1]["ts"]) if usable else 0
    rejects = [r for r in mine if r.get("action") == wf.REJECT and r.get("from_stage") == wf.READY_TO_USE
               and int(r.get("ts") or 0) >= since]
    audit = rejects[-1] if rejects else None
    who = {"actor": audit.get("actor"), "role": audit.get("role"), "comment": audit.get("comment"),
           "at": _iso(audit.get("ts"))} if audit else {}
    evaluation = find_evaluation(since)
    head = f"model execution not allowed: {model} version {version} has usability reject"
    if evaluation and evaluation.get("breaches"):
        breaches = evaluation["breaches"]
        first = breaches[0]
        parts = [f"{b.get('monitor')} monitor {b.get('key')} = {_number(b.get('value'))} (threshold "
                 f"{b.get('comparison') or ''} {_number(b.get('threshold'))})".replace("( ", "(") for b in breaches]
        message = f"{head}, set by the {first.get('monitor')} monitor on live traffic: {'; '.join(parts)}"
        if who.get("actor"):
            message += f" (recorded by {who['actor']})"
        return message, {"kind": "monitor", "monitor": first.get("monitor"), "key": first.get("key"),
                         "value": first.get("value"), "threshold": first.get("threshold"),
                         "comparison": first.get("comparison"), "breaches": breaches,
                         "evaluated_at": evaluation.get("evaluated_at"), "run_id": evaluation.get("run_id"),
                         "evaluation_seq": evaluation.get("seq"), **who}
    if audit:
        comment = who.get("comment") or "no comment"
        return (f"{head}, set by {who['actor']} ({who.get('role') or 'no role'}) at {who['at']}: {comment}",
                {"kind": "manual", **who})
    return head, {"kind": "unknown"}


# --- the gate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Everything a request needs to know, replaced as a whole at each registry read."""

    verdict: Verdict | None
    served: Any = None  # the loaded model of verdict.version while serving
    read_ok_at: float | None = None  # monotonic time of the last successful registry read
    read_ok_ms: int | None = None
    error: str | None = None  # why the last read failed (None when it worked)
    failing_since_ms: int | None = None
    last_evaluation: dict[str, Any] | None = None


class Gate:
    """Per-worker view of governance, refreshed in the background; `current` never does I/O."""

    def __init__(
        self,
        options: ServeOptions,
        loader: Callable[[int], Any],
        *,
        client: Any = None,
        payload_engine: sa.Engine | None = None,
        on_snapshot: Callable[[Snapshot], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.options = options
        self.loader = loader
        self._client = client
        self.payload_engine = payload_engine
        self.on_snapshot = on_snapshot or (lambda s: None)
        self.clock = clock
        self.cache_seconds = float(options.usability_cache_seconds)
        self._snapshot = Snapshot(None, error="the registry has not been read yet")
        # the last version a verdict named: a read that saw no version (the alias dropped) does not
        # forget it, so a decommissioning is still answered 410 at the next read
        self._last_version: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow_governance.client.governance import GovernanceClient

            client = GovernanceClient()
            if client.remote:  # a read that hangs must not outlive the cache by much
                client.backend.timeout = max(REMOTE_TIMEOUT_SECONDS, self.cache_seconds)
            self._client = client
        return self._client

    # --- reading -------------------------------------------------------------------------

    def read(self) -> Verdict:
        """One governance read (raises when the registry cannot be read)."""
        from mlflow.exceptions import MlflowException

        previous = self._last_version
        try:
            status = self.client.status(self.options.model)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return Verdict(None, refusal=_not_servable(f"model {self.options.model!r} does not exist in the "
                                                           "registry", reason="unknown_model"))
            raise
        verdict = decide(self.options, status, previous)
        if verdict.refusal is not None and verdict.refusal.reason == "usability_reject":
            verdict = self._explain_reject(verdict)
        return verdict

    def _explain_reject(self, verdict: Verdict) -> Verdict:
        version = int(verdict.version or 0)
        try:
            audit_rows = self.client.audit(self.options.model, AUDIT_ROWS)
        except Exception as exc:  # noqa: BLE001 - still refused; only the explanation is missing
            log.warning("cannot read the audit trail to say why usability is reject: %s", exc)
            audit_rows = []

        def find(since_ms: int) -> dict[str, Any] | None:
            if self.payload_engine is None:
                return None
            try:
                return evaluation_row(self.payload_engine, self.options.model, version, True, since_ms)
            except Exception as exc:  # noqa: BLE001 - the payload database may be down
                log.warning("cannot read the monitor evaluations: %s", type(exc).__name__)
                return None

        message, set_by = reject_story(self.options.model, version, audit_rows, find)
        details = {**verdict.refusal.details, "set_by": set_by}
        return replace(verdict, refusal=replace(verdict.refusal, message=message, details=details), set_by=set_by)

    def _latest_evaluation(self, version: int | None) -> dict[str, Any] | None:
        if self.payload_engine is None or version is None:
            return self._snapshot.last_evaluation
        try:
            return evaluation_row(self.payload_engine, self.options.model, version)
        except Exception:  # noqa: BLE001 - keep the last one known
            return self._snapshot.last_evaluation

    def refresh(self) -> bool:
        """Read governance (and load the model of a newly served version); True when the read worked."""
        with self._lock:
            old = self._snapshot
            try:
                verdict = self.read()
            except Exception as exc:  # noqa: BLE001 - every failure to read counts as the registry away
                reason = _reason(exc)
                if old.error is None:
                    log.warning("cannot read the registry: %s", reason)
                self._publish(replace(old, error=reason,
                                      failing_since_ms=old.failing_since_ms or int(time.time() * 1000)))
                return False
            served = old.served if old.served is not None and getattr(old.served, "version", None) == verdict.version \
                else None
            if verdict.serving and served is None:
                try:
                    served = self.loader(int(verdict.version))
                except Exception as exc:  # noqa: BLE001 - the version stays unserved; retried at the next read
                    log.error("cannot load %s version %s: %s", self.options.model, verdict.version, exc)
                    verdict = replace(verdict, refusal=_not_servable(
                        f"{self.options.model} version {verdict.version} could not be loaded: {_reason(exc)}",
                        reason="model_not_loaded"))
            if verdict.version is not None:
                self._last_version = int(verdict.version)
            if old.error is not None and old.read_ok_at is not None:
                log.warning("registry readable again")
            self._publish(Snapshot(verdict, served if verdict.serving else None, self.clock(),
                                   int(time.time() * 1000), None, None, self._latest_evaluation(verdict.version)))
            return True

    def _publish(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        try:
            self.on_snapshot(snapshot)
        except Exception:  # noqa: BLE001 - metrics must not break the gate
            log.exception("snapshot hook failed")

    # --- the request path ----------------------------------------------------------------

    def current(self) -> tuple[Snapshot, Refusal | None]:
        """The last snapshot and the refusal in force (fail-closed when governance is too old)."""
        snap = self._snapshot
        if snap.read_ok_at is None:
            return snap, self._unavailable(snap, "the registry has not been read yet")
        age = self.clock() - snap.read_ok_at
        if age > 2 * self.cache_seconds:
            return snap, self._unavailable(snap, f"the registry could not be read for {age - self.cache_seconds:.1f}s, "
                                                 f"longer than the usability cache lifetime of {self.cache_seconds:g}s")
        return snap, snap.verdict.refusal if snap.verdict else None

    @staticmethod
    def _unavailable(snap: Snapshot, what: str) -> Refusal:
        why = f": {snap.error}" if snap.error else ""
        return Refusal(503, "REGISTRY_UNAVAILABLE", f"{what}{why}; refusing to score until governance can be read "
                       "(fail closed)", "registry_unavailable",
                       {"failing_since": _iso(snap.failing_since_ms), "last_read": _iso(snap.read_ok_ms)})

    # --- the thread ----------------------------------------------------------------------

    def start(self) -> Gate:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlgov-gate", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        delay = self.cache_seconds if self._snapshot.error is None else min(RETRY_SECONDS, self.cache_seconds / 2)
        while not self._stop.wait(delay):
            ok = self.refresh()
            delay = self.cache_seconds if ok else min(RETRY_SECONDS, self.cache_seconds / 2)


def _reason(exc: BaseException) -> str:
    """A failure in words for a client: no database error text, no traceback."""
    from mlflow_governance.core.errors import leaks_database_text
    from mlflow_governance.safe.urls import scrub

    lines = str(getattr(exc, "message", None) or exc).strip().splitlines()
    text = lines[0][:300] if lines else type(exc).__name__
    if leaks_database_text(text):
        return f"the registry database failed ({type(exc).__name__})"
    return scrub(text)  # a URL in the message keeps no password or secret query value


def check_servable(options: ServeOptions, client: Any = None) -> Verdict:
    """Governance's answer before ``mlgov serve`` starts: NotServable unless the version is served,
    or is only refused for usability (an owner's accept lets it resume without a restart)."""
    gate = Gate(options, loader=lambda v: None, client=client)
    verdict = gate.read()
    if verdict.refusal is not None and verdict.refusal.reason != "usability_reject":
        raise NotServable(verdict.refusal.message, verdict.refusal.reason)
    return verdict
