"""The parts of one worker's app (`Sidecar`), built once by `app.create_app`: who checks callers
(`authenticator`), the `gate`, the payload writer, the metrics, the model and explainer caches
(`models`), the explanation admission and, with ``batch_window_ms`` > 0, the micro-batcher
(`batching`); and the ``/status`` document they make together. No Flask here: the routes are
`app`'s.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mlflow_governance.scoring.decision import score
from mlflow_governance.sidecar import ServeOptions, access, bodies, gate, limits, payloads
from mlflow_governance.sidecar.batching import MicroBatcher
from mlflow_governance.sidecar.metrics import Metrics
from mlflow_governance.sidecar.models import ExplainerCache, ModelCache, ServedModel


def authenticator(options: ServeOptions) -> Any:
    """How the workers check callers: `access.NoAuthentication` for ``--no-auth``, else the governance
    server of the registry URI (ValueError when the registry is local: no server to ask)."""
    if options.no_auth:
        return access.NoAuthentication()
    from mlflow_governance.core import environment_variables as ev
    from mlflow_governance.sidecar import governance_server

    uri = governance_server()
    if uri is None:
        raise ValueError("authentication needs a governance server to check callers against (MLFLOW_TRACKING_URI "
                         "or MLFLOW_REGISTRY_URI = its http(s):// URL); on a local registry pass --no-auth "
                         "(development only: nobody is authenticated)")
    return access.ServerAuthentication(uri, options.model, options.auth_cache_seconds,
                                       max_failures=ev.MLGOV_SIGNIN_MAX_FAILURES.get(),
                                       lockout_seconds=float(ev.MLGOV_SIGNIN_LOCKOUT_SECONDS.get()))


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

    def status(self, caller: str | None, endpoint: str) -> dict[str, Any]:
        """The ``/status`` document, for a request by ``caller`` (a user, None when unknown) that
        reached the scoring ``endpoint`` URL."""
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
            "caller": caller,
            "limits": {"max_rows": self.options.max_rows, "max_value_chars": self.options.max_value_chars,
                       "max_body_bytes": self.options.max_body_bytes,
                       "explain_per_minute": self.options.explain_per_minute,
                       "explain_queue": self.options.explain_queue},
            "endpoint": endpoint,
            "worker_pid": os.getpid(),
        }
