"""The production monitor: the validation monitors on live traffic, and usability turned red.

Every ``every_rows`` newly logged rows or ``every_seconds`` (whichever comes first, and only when
there is something new), off the request path, the `Watcher` reads the most recent
``window_rows`` scored rows of the served version from the payload table with the labels that
feedback has brought, and evaluates them with the monitors of `mlflow_governance.monitoring`
against the version's reference and the configuration in force (the one recorded on the version,
else the defaults). Each evaluation is an MLflow run linked to the version (figures as metrics,
evidently's HTML report as an artifact) and a row of ``mlgov_monitor_evaluation``. On a breach,
usability is set to reject through the governance core as the watcher's own identity (a
ModelMonitor service user, configured like any client's), audited with the figures in the comment;
the scoring workers then refuse with 423 until the owner re-accepts. A staging version is
evaluated and recorded but never changes usability.

Each evaluation also records who is behind its window: the callers who had its rows scored and
the labellers of their current labels (``callers`` and ``labellers`` of the evaluation row,
``{name: rows}``, `ANONYMOUS` for rows without one); a reject's audit comment names the biggest
of them (`who_summary`), so that a breach brought about by forged traffic or forged labels points
at whoever sent them. Only the current label of a request id counts (`schema`: a corrected label
is kept, superseded, and never read here).

Under heavy traffic the rows arrive faster than any schedule by rows, so the monitor bounds its own
CPU: evaluations are at least ``min_interval_seconds`` apart, and after one that cost ``c`` CPU
seconds the next waits until the monitor has used no more than ``cpu_share`` of one core. What is
paid once is not charged to that budget: `Watcher.warm_up` imports evidently and prepares the served
version's monitors just before the first evaluation (about 10 CPU s, mostly imports and the model load;
charged, it would leave a new sidecar's monitor blind for a minute), and preparing the monitors of
a newly promoted version is left out of its first evaluation's cost. The
figures themselves are cheap (about 0.1 CPU s for 5,000 rows); evidently's HTML report is not
(about 1-3 CPU s and 4 MB per report), so it is attached to the run of every breach, of the first
evaluation, and otherwise at most every ``report_every_seconds``; the run's
``mlgov_monitor_report`` tag says whether this one has it.

`mlgov monitor` / ``mlflow run . -e monitor`` runs one evaluation as a batch job (`run_batch`).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from mlflow_governance.core import workflow
from mlflow_governance.monitoring.base import BREACH
from mlflow_governance.sidecar import (
    DEFAULT_MONITOR_CPU_SHARE,
    DEFAULT_MONITOR_EVERY_ROWS,
    DEFAULT_MONITOR_EVERY_SECONDS,
    DEFAULT_MONITOR_MIN_INTERVAL_SECONDS,
    DEFAULT_MONITOR_REPORT_EVERY_SECONDS,
    DEFAULT_MONITOR_WINDOW_ROWS,
    default_payload_url,
    schema,
)

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0
REPORT_ARTIFACT = "monitoring/evidently_drift.html"
ANONYMOUS = "(anonymous)"  # rows scored or labelled without a caller identity (--no-auth)
WHO_NAMES = 3  # names shown in a reject's comment per list, the rest counted
WHO_NAME_CHARS = 64  # a name longer than this is cut in the comment


def _read(engine: sa.Engine, model: str, version: int, rows: int, staging: bool = False, after_seq: int = 0):
    """(window, last seq, callers, labellers) of the latest ``rows`` scored rows, or (None, 0, {}, {})."""
    from mlflow_governance.monitoring.base import Window
    from mlflow_governance.training.data import feature_frame

    p, f = schema.payload, schema.feedback
    current = f.c.superseded_by.is_(None)
    latest = (  # one current label per id (max: an older database not migrated yet may hold several)
        sa.select(f.c.request_id, sa.func.max(f.c.seq).label("seq")).where(current).group_by(f.c.request_id)
        .subquery("latest")
    )
    label = f.alias("label")
    query = (
        sa.select(p.c.seq, p.c.features, p.c.prediction, p.c.probability, p.c.caller, label.c.label,
                  label.c.labeller)
        .select_from(p.outerjoin(latest, latest.c.request_id == p.c.request_id)
                     .outerjoin(label, label.c.seq == latest.c.seq))
        .where(p.c.model == model, p.c.version == int(version), p.c.staging == bool(staging),
               p.c.seq > int(after_seq))
        .order_by(p.c.seq.desc())
        .limit(int(rows))
    )
    with engine.connect() as conn:
        found = conn.execute(query).all()
    if not found:
        return None, 0, {}, {}
    found = found[::-1]  # oldest first
    features = feature_frame(pd.DataFrame([json.loads(r.features) for r in found]))
    labels = np.array([np.nan if r.label is None else int(r.label) for r in found], dtype="float64")
    window = Window(features, np.array([r.prediction for r in found], dtype="int64"),
                    np.array([r.probability for r in found], dtype="float64"), labels)
    callers = Counter(ANONYMOUS if r.caller is None else r.caller for r in found)
    labellers = Counter(ANONYMOUS if r.labeller is None else r.labeller for r in found if r.label is not None)
    return window, int(found[-1].seq), dict(callers.most_common()), dict(labellers.most_common())


def read_window(engine: sa.Engine, model: str, version: int, rows: int, staging: bool = False, after_seq: int = 0):
    """The latest ``rows`` scored rows of ``model`` version ``version`` (logged after ``after_seq``)
    as a monitor `Window`, with the current feedback label of each row where there is one;
    (window, last seq) or (None, 0)."""
    window, top, _, _ = _read(engine, model, version, rows, staging, after_seq)
    return window, top


def who_summary(counts: dict[str, int] | None, limit: int = WHO_NAMES) -> str:
    """``alice (4,000), bob (900) and 3 others``: the ``limit`` biggest names of ``{name: rows}``."""
    if not counts:
        return "nobody"
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = []
    for name, n in ranked[:limit]:
        name = " ".join(str(name).split())  # one line: no newline of a name reaches the audit comment
        if len(name) > WHO_NAME_CHARS:
            name = name[:WHO_NAME_CHARS - 3] + "..."
        shown.append(f"{name} ({n:,})")
    text = ", ".join(shown)
    rest = len(ranked) - limit
    if rest > 0:
        text += f" and {rest} other{'s' if rest > 1 else ''}"
    return text


def new_rows(engine: sa.Engine, model: str, version: int, after_seq: int, staging: bool = False) -> tuple[int, int]:
    """(rows logged after ``after_seq``, the highest seq) for the served version."""
    p = schema.payload
    query = sa.select(sa.func.count(), sa.func.max(p.c.seq)).where(
        p.c.model == model, p.c.version == int(version), p.c.staging == bool(staging), p.c.seq > int(after_seq))
    with engine.connect() as conn:
        count, top = conn.execute(query).one()
    return int(count or 0), int(top or after_seq)


def breach_comment(evaluation, run_id: str | None, callers: dict[str, int] | None = None,
                   labellers: dict[str, int] | None = None) -> str:
    """The audit comment of a monitor's reject: every breached figure against its bound, and who is
    behind the window (the biggest callers and labellers, when given)."""
    parts = []
    for result in evaluation.results:
        for f in result.figures:
            if f.verdict == BREACH:
                value = "undefined" if f.value is None else f"{f.value:.4f}"
                parts.append(f"{result.monitor}: {f.key}={value} (needs {f.comparison} {f.threshold})")
    run = f"; evaluation run {run_id}" if run_id else ""
    who = ""
    if callers is not None:
        who += f"; rows scored for {who_summary(callers)}"
    if labellers is not None:
        who += f"; labels by {who_summary(labellers)}"
    return f"monitor breach on live traffic: {'; '.join(parts)}{run}; configuration {evaluation.digest}{who}"


def breaches_of(evaluation) -> list[dict[str, Any]]:
    return [
        {"monitor": r.monitor, "key": f.key, "value": f.value, "threshold": f.threshold, "comparison": f.comparison}
        for r in evaluation.results
        for f in r.figures
        if f.verdict == BREACH
    ]


@dataclass
class Watcher:
    """Evaluates the served version's recent traffic and turns its usability red on a breach."""

    model: str
    version: int | None = None
    alias: str | None = None
    payload_url: str | None = None
    every_rows: int = DEFAULT_MONITOR_EVERY_ROWS
    every_seconds: float = DEFAULT_MONITOR_EVERY_SECONDS
    staging: bool = False
    window_rows: int = DEFAULT_MONITOR_WINDOW_ROWS
    min_interval_seconds: float = DEFAULT_MONITOR_MIN_INTERVAL_SECONDS
    cpu_share: float = DEFAULT_MONITOR_CPU_SHARE
    report_every_seconds: float = DEFAULT_MONITOR_REPORT_EVERY_SECONDS
    experiment: str | None = None
    client: Any = None
    last: dict[str, Any] = field(default_factory=dict)
    _engine: sa.Engine | None = field(default=None, repr=False)
    _prepared: dict[tuple[int, str], Any] = field(default_factory=dict, repr=False)
    _seen_seq: int = 0
    _last_run: float = 0.0
    _last_cost: float = 0.0  # CPU seconds of the last evaluation (this thread), preparation excluded
    _preparation_cost: float = 0.0  # CPU seconds spent preparing monitors, in all
    _last_report: float | None = None  # monotonic time of the last evidently report
    # After the owner re-accepts a rejected version, the window restarts with the rows scored
    # from then on: the rows that were reviewed do not turn it red again.
    _floor_seq: int = 0
    _usability: str | None = None

    # --- plumbing ------------------------------------------------------------------------

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(self.payload_url or default_payload_url(), pool_pre_ping=True)
            schema.create_all(self._engine)
        return self._engine

    @property
    def governance(self):
        if self.client is None:
            from mlflow_governance.client.governance import GovernanceClient

            self.client = GovernanceClient()
        return self.client

    def served_version(self) -> tuple[int | None, dict[str, Any]]:
        """The version to watch (the given one, else the production alias's) and its status."""
        status = self.governance.status(self.model, self.version)
        version = self.version if self.version is not None else status.get("production_version")
        if version is None:
            return None, {}
        if self.version is None:
            status = self.governance.status(self.model, version)
        return int(version), status["version"]

    def _follow_review(self, version: int, status: dict[str, Any]) -> None:
        """Keep the window's floor after the rows the owner last reviewed: at start and whenever
        usability goes from reject back to accept, the floor is the last row scored before the
        version's latest accept (from the audit trail, so a restarted monitor agrees)."""
        usability = status.get("usability")
        changed = self._usability is None or (self._usability != usability and usability == workflow.USABILITY_ACCEPT)
        if changed and not self.staging:
            accepted = [r for r in self.governance.audit(self.model)
                        if r.get("action") == workflow.ACCEPT and r.get("version") == version
                        and r.get("outcome") == "allowed"]
            if accepted:
                p = schema.payload
                with self.engine.connect() as conn:
                    top = conn.execute(sa.select(sa.func.max(p.c.seq)).where(
                        p.c.model == self.model, p.c.version == int(version), p.c.staging.is_(False),
                        p.c.ts <= int(accepted[-1]["ts"]))).scalar()
                if top and top > self._floor_seq:
                    self._floor_seq = int(top)
                    self._seen_seq = max(self._seen_seq, self._floor_seq)
                    log.info("%s version %s was re-accepted: the monitor's window starts after row %s",
                             self.model, version, self._floor_seq)
        self._usability = usability

    def _monitors(self, version: int, status: dict[str, Any]):
        """The monitors for ``version`` under its configuration in force, prepared once."""
        from mlflow_governance.core.monitor_config import config_in_force
        from mlflow_governance.monitoring import suite
        from mlflow_governance.scoring.inputs import load_version

        config, _ = config_in_force(status)
        key = (version, config.digest())
        if key not in self._prepared:
            started_cpu = time.thread_time()
            under_test = load_version(self.model, version, status.get("fields") or {})
            self._prepared = {key: (config, suite.build_monitors(config, under_test.reference))}
            self._preparation_cost += time.thread_time() - started_cpu
        return self._prepared[key]

    def warm_up(self) -> float:
        """Pay the one-time costs before the first evaluation: evidently's modules (its report is
        attached to the first evaluation) and the served version's monitors. Returns the CPU
        seconds spent; a failure is logged and left to the first evaluation to meet again."""
        started_cpu = time.thread_time()
        try:
            import evidently.presets  # noqa: F401 - imported for its cost, here rather than in an evaluation
            from evidently import Report  # noqa: F401

            version, status = self.served_version()
            if version is not None:
                self._monitors(version, status)
        except Exception as exc:  # noqa: BLE001 - the first evaluation will report it
            log.warning("production monitor of %s could not prepare: %s", self.model, getattr(exc, "message", None) or exc)
        spent = time.thread_time() - started_cpu
        log.info("production monitor of %s prepared in %.1f CPU s (not charged to its CPU share)", self.model, spent)
        return spent

    # --- one evaluation ------------------------------------------------------------------

    def run_once(self):
        """Evaluate the recent window now; returns the `Evaluation`, or None when there is nothing
        to evaluate (no served version, no rows)."""
        from mlflow_governance.monitoring import suite

        started_cpu, prepared_before = time.thread_time(), self._preparation_cost
        version, status = self.served_version()
        if version is None:
            self.last = {"verdict": None, "reason": f"{self.model!r} has no production version to watch"}
            return None
        self._follow_review(version, status)
        window, top, callers, labellers = _read(self.engine, self.model, version, self.window_rows, self.staging,
                                                self._floor_seq)
        if window is None:
            self.last = {"verdict": None, "version": version, "reason": "no scored rows yet"}
            return None
        config, monitors = self._monitors(version, status)
        evaluation = suite.evaluate(monitors, window, config.digest())
        report = self.report_due(evaluation)
        run_id = self._log_run(version, evaluation, window, monitors, report)
        action = None
        comment = None
        if (evaluation.verdict == BREACH and not self.staging and status.get("stage") == workflow.READY_TO_USE
                and status.get("usability") == workflow.USABILITY_ACCEPT):
            comment = breach_comment(evaluation, run_id, callers, labellers)
            # The evaluation row names the reject before the reject exists: a sidecar worker that
            # reads the red usability in between must find the monitor behind it, not "manual".
            seq = self._record(version, len(window), evaluation, run_id, workflow.USABILITY_REJECT, callers, labellers)
            try:
                evidence = {"monitor": "production", "run_id": run_id, "config_digest": evaluation.digest,
                            "rows": len(window), "breaches": breaches_of(evaluation),
                            "callers": who_summary(callers), "labellers": who_summary(labellers)}
                self.governance.transition(self.model, workflow.REJECT, version, comment=comment, evidence=evidence)
                action = workflow.USABILITY_REJECT
                self._usability = workflow.USABILITY_REJECT
                log.warning("usability of %s version %s turned to reject: %s", self.model, version, comment)
            except Exception as exc:  # noqa: BLE001 - recorded and retried at the next evaluation
                comment = f"the reject was refused: {getattr(exc, 'message', None) or exc}"
                log.error("monitor could not reject %s version %s: %s", self.model, version, comment)
                self._unmark_reject(seq)
        else:
            self._record(version, len(window), evaluation, run_id, action, callers, labellers)
        self._seen_seq, self._last_run = top, time.monotonic()
        self._last_cost = time.thread_time() - started_cpu - (self._preparation_cost - prepared_before)
        self.last = {"verdict": evaluation.verdict, "version": version, "reason": evaluation.reason,
                     "run_id": run_id, "usability_action": action, "comment": comment,
                     "callers": callers, "labellers": labellers,
                     "figures": evaluation.figures(), "report": report, "cpu_seconds": round(self._last_cost, 3)}
        return evaluation

    def report_due(self, evaluation) -> bool:
        """Whether this evaluation's run gets evidently's HTML report: on a breach, the first time,
        and otherwise once ``report_every_seconds`` have passed since the last one."""
        if evaluation.verdict == BREACH or self._last_report is None:
            return True
        return time.monotonic() - self._last_report >= self.report_every_seconds

    def _log_run(self, version: int, evaluation, window, monitors, report: bool = True) -> str | None:
        """One MLflow run per evaluation, linked to the version (metrics on its logged model)."""
        import mlflow
        from mlflow import MlflowClient

        try:
            experiment = self.experiment or f"{self.model}-monitoring"
            mlflow.set_experiment(experiment)
            metrics = {k: float(f["value"]) for k, f in evaluation.figures().items() if f.get("value") is not None}
            with mlflow.start_run(run_name=f"monitor {self.model} v{version}") as run:
                mlflow.set_tags({"governed_model": self.model, "governed_version": str(version),
                                 "mlgov_monitor_verdict": evaluation.verdict, "mlgov_staging": str(self.staging),
                                 "monitor_config_digest": evaluation.digest,
                                 "mlgov_monitor_report": "evidently" if report else "figures only"})
                mlflow.log_params({"window_rows": len(window), "governed_version": version})
                mlflow.log_metrics(metrics)
                model_id = getattr(MlflowClient().get_model_version(self.model, str(version)), "model_id", None)
                if model_id:
                    mlflow.log_metrics({f"monitor.{k}": v for k, v in metrics.items()}, model_id=model_id)
                mlflow.log_dict(evaluation.to_dict(), "monitoring/evaluation.json")
                drift = next((m for m in monitors if getattr(m, "name", "") == "drift"), None)
                if report and drift is not None and hasattr(drift, "evidently_html"):
                    with tempfile.TemporaryDirectory() as tmp:
                        page = Path(tmp) / Path(REPORT_ARTIFACT).name
                        page.write_text(drift.evidently_html(window))
                        mlflow.log_artifact(str(page), str(Path(REPORT_ARTIFACT).parent))
                    self._last_report = time.monotonic()
                return run.info.run_id
        except Exception as exc:  # noqa: BLE001 - the verdict still counts without its run
            log.error("could not log the monitoring run for %s version %s: %s", self.model, version, exc)
            return None

    def _unmark_reject(self, seq: int | None) -> None:
        """The reject an evaluation row announced did not happen: the row says so."""
        if seq is None:
            return
        e = schema.evaluation
        with self.engine.begin() as conn:
            conn.execute(e.update().where(e.c.seq == seq).values(usability_action=None))

    def _record(self, version: int, rows: int, evaluation, run_id: str | None, action: str | None,
                callers: dict[str, int] | None = None, labellers: dict[str, int] | None = None) -> int | None:
        """Insert the evaluation row; its sequence number."""
        with self.engine.begin() as conn:
            result = conn.execute(schema.evaluation.insert().values(
                ts=int(time.time() * 1000), model=self.model, version=version, rows=rows,
                verdict=evaluation.verdict, reason=evaluation.reason,
                figures=json.dumps(evaluation.figures(), default=str), breaches=json.dumps(breaches_of(evaluation)),
                run_id=run_id, usability_action=action, config_digest=evaluation.digest,
                callers=None if callers is None else json.dumps(callers),
                labellers=None if labellers is None else json.dumps(labellers),
            ))
        key = result.inserted_primary_key
        return int(key[0]) if key and key[0] is not None else None

    # --- the schedule --------------------------------------------------------------------

    def next_allowed(self) -> float:
        """The monotonic time before which no evaluation starts: ``min_interval_seconds`` after the
        last one, and late enough that the last one's CPU is at most ``cpu_share`` of the time."""
        wait = self.min_interval_seconds
        if self.cpu_share > 0:
            wait = max(wait, self._last_cost / self.cpu_share)
        return self._last_run + wait

    def due(self) -> bool:
        """Whether enough rows or enough time have passed since the last evaluation (and the CPU
        budget allows one now)."""
        if time.monotonic() < self.next_allowed():
            return False
        version, status = self.served_version()
        if version is None:
            return False
        self._follow_review(version, status)
        count, _ = new_rows(self.engine, self.model, version, self._seen_seq, self.staging)
        if count == 0:
            return False
        if self.every_rows and count >= self.every_rows:
            return True
        return bool(self.every_seconds) and time.monotonic() - self._last_run >= self.every_seconds

    def loop(self, stop: threading.Event) -> None:
        """Evaluate whenever `due`, until ``stop`` is set; errors are logged and retried."""
        if not self.every_rows and not self.every_seconds:
            return
        self._last_run = time.monotonic()
        warm = False
        while not stop.is_set():
            try:
                if self.due():
                    if not warm:  # only once there is something to evaluate: an idle sidecar never pays it
                        warm = True
                        self.warm_up()
                    self.run_once()
            except Exception as exc:  # noqa: BLE001 - the monitor keeps running; the error is logged
                log.error("production monitor of %s: %s", self.model, getattr(exc, "message", None) or exc)
            stop.wait(POLL_SECONDS)


def run_batch(model: str, payload_url: str, version: int | None = None, window_rows: int = DEFAULT_MONITOR_WINDOW_ROWS,
              staging: bool = False):
    """One evaluation over the payload table (`mlgov monitor`, ``mlflow run . -e monitor``), always
    with evidently's report."""
    watcher = Watcher(model=model, version=version, payload_url=payload_url, window_rows=window_rows,
                      staging=staging, report_every_seconds=0.0)
    return watcher, watcher.run_once()
