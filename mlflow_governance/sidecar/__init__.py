"""The scoring sidecar: the governed production model behind a REST endpoint that refuses to score
once governance says no.

``mlgov serve`` (`mlflow_governance.cli.serving`) runs the Flask application of `app` under
gunicorn (`server`: configuration, worker hooks, numeric thread limits) and, beside it, the
production monitor (`watch`). Each worker:

* asks the `gate` which version it may serve (the ``production`` alias while it is Ready to Use
  and usable, or one version under validation in staging mode) and why not, from the registry
  with a short cache, failing closed when the registry cannot be read;
* parses and checks request bodies against the model signature (`bodies`);
* loads each served version's model once and its explainer at the first ``/explain`` (`models`),
  scoring concurrent requests together with a batch window (`batching`);
* hands every scored row to the `payloads` writer, which stores them in batches from a
  background thread (spooling to local files while the payload database is down);
* counts what it does for Prometheus (`metrics`, multiprocess mode under gunicorn).

`ServeOptions` is what a worker needs to know; ``mlgov serve`` passes it to the workers as JSON
in the environment. Importing this package is cheap: no Flask, NumPy or database import.

Owns: serving a governed version (gate, routes, payload store, production monitor, process).
May import: the core, safe, the client, monitoring and scoring; nothing above (no validation,
evidence, server or CLI).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Defaults of the scoring options (the CLI's and `create_app`'s).
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
DEFAULT_CACHE_SECONDS = 5.0
DEFAULT_BATCH_ROWS = 1000
DEFAULT_FLUSH_SECONDS = 0.2
#: Limits of one request: rows (well under the monitors' 5,000-row window, so one body cannot fill
#: it) and characters of one text value (category codes and names, not documents).
DEFAULT_MAX_ROWS = 1000
DEFAULT_MAX_VALUE_CHARS = 256
#: Explanations: per caller and worker each minute, and how many may wait behind the running one.
DEFAULT_EXPLAIN_PER_MINUTE = 30
DEFAULT_EXPLAIN_QUEUE = 2
DEFAULT_AUTH_CACHE_SECONDS = 2.0
#: The production monitor's cadence (`watch.Watcher`, `server.ServerOptions` and ``mlgov serve``):
#: evaluate after this many new rows or this many seconds (0: not by rows / time; both 0: off), over
#: the latest window of rows, at least this many seconds apart, at most this share of one core,
#: with evidently's HTML report at most this often (0: every evaluation).
DEFAULT_MONITOR_EVERY_ROWS = 1000
DEFAULT_MONITOR_EVERY_SECONDS = 20.0
DEFAULT_MONITOR_WINDOW_ROWS = 5000
DEFAULT_MONITOR_MIN_INTERVAL_SECONDS = 5.0
DEFAULT_MONITOR_CPU_SHARE = 0.2
DEFAULT_MONITOR_REPORT_EVERY_SECONDS = 300.0
PAYLOAD_FILE = "mlgov-payloads.db"
SPOOL_DIR = "mlgov-spool"
PRODUCTION = "production"
STAGING = "staging"


def default_payload_url(workdir: str | Path | None = None) -> str:
    """SQLite next to the working directory: ``sqlite:///<cwd>/mlgov-payloads.db``."""
    return f"sqlite:///{Path(workdir or Path.cwd()).resolve() / PAYLOAD_FILE}"


def configured_payload_url() -> str | None:
    """The payload database the ``MLGOV_PAYLOAD_URL`` setting names (the one the governance server's
    trace route reads), or None: ``mlgov serve``'s default for ``--payload-url``, resolved once in
    its own process (the workers get the resolved `ServeOptions`). None leaves it to
    `default_payload_url`."""
    from mlflow_governance.core import environment_variables as ev

    return ev.MLGOV_PAYLOAD_URL.get()


@dataclass(frozen=True)
class ServeOptions:
    """What one scoring worker serves and how (`create_app`'s only argument).

    ``version`` None serves whatever the production ``alias`` points at (production mode);
    ``version`` N serves that version only: in production mode while the alias points at it,
    in ``staging`` mode while it is under validation or deployment (never Ready to Use).
    """

    model: str
    alias: str | None = PRODUCTION
    version: int | None = None
    staging: bool = False
    payload_url: str | None = None
    spool_dir: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    usability_cache_seconds: float = DEFAULT_CACHE_SECONDS
    batch_rows: int = DEFAULT_BATCH_ROWS
    flush_seconds: float = DEFAULT_FLUSH_SECONDS
    #: Micro-batching: gather concurrent requests of a worker's threads for up to this long into
    #: one ``predict`` (0: every request scores alone).
    batch_window_ms: float = 0.0
    #: ``--no-auth``: nobody is authenticated (local development only; refused against a server).
    no_auth: bool = False
    #: How long a worker trusts the governance server's answer about a caller.
    auth_cache_seconds: float = DEFAULT_AUTH_CACHE_SECONDS
    max_rows: int = DEFAULT_MAX_ROWS
    max_value_chars: int = DEFAULT_MAX_VALUE_CHARS
    explain_per_minute: int = DEFAULT_EXPLAIN_PER_MINUTE
    explain_queue: int = DEFAULT_EXPLAIN_QUEUE

    @property
    def mode(self) -> str:
        return STAGING if self.staging else PRODUCTION

    def problems(self) -> list[str]:
        """What is wrong with these options (empty when they are usable)."""
        found = []
        if not self.model or not self.model.strip():
            found.append("--model must name a registered model")
        if self.staging and self.version is None:
            found.append("--staging needs --version N (the version under validation to serve)")
        if self.version is not None and self.version < 1:
            found.append("--version must be 1 or more")
        if self.version is None and not self.alias:
            found.append("give --alias production or --version N")
        if self.max_body_bytes < 1024:
            found.append("--max-body-bytes must be at least 1024")
        if not self.usability_cache_seconds > 0:
            found.append("--usability-cache-seconds must be more than 0")
        if self.batch_rows < 1 or not self.flush_seconds > 0:
            found.append("the payload batch size and flush interval must be positive")
        if self.batch_window_ms < 0:
            found.append("--batch-window-ms must not be negative")
        if self.auth_cache_seconds < 0:
            found.append("--auth-cache-seconds must not be negative")
        if self.max_rows < 1 or self.max_value_chars < 1:
            found.append("--max-rows and --max-value-chars must be at least 1")
        if self.explain_per_minute < 1 or self.explain_queue < 0:
            found.append("--explain-per-minute must be at least 1 and --explain-queue not negative")
        return found

    def resolved(self, workdir: str | Path | None = None) -> ServeOptions:
        """These options with the payload database and the spool directory made absolute."""
        base = Path(workdir or Path.cwd()).resolve()
        return dataclasses.replace(
            self,
            alias=None if self.version is not None else self.alias,
            payload_url=self.payload_url or default_payload_url(base),
            spool_dir=str((base / (self.spool_dir or SPOOL_DIR)).resolve()),
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServeOptions:
        data: dict[str, Any] = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_environment(cls) -> ServeOptions:
        """The options ``mlgov serve`` handed to its workers (``MLGOV_SERVE_OPTIONS``)."""
        from mlflow_governance.core.environment_variables import MLGOV_SERVE_OPTIONS

        text = MLGOV_SERVE_OPTIONS.get()
        if not text:
            raise ValueError(f"{MLGOV_SERVE_OPTIONS.name} is not set: start the sidecar with mlgov serve")
        return cls.from_json(text)


def client_credentials() -> tuple[str, str] | None:
    """The basic-auth credentials a program of ours sends to a sidecar: MLflow's
    ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (the same user it is against the governance server);
    None when unset (a ``--no-auth`` development sidecar)."""
    from mlflow_governance.core.environment_variables import MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_USERNAME

    user, password = MLFLOW_TRACKING_USERNAME.get(), MLFLOW_TRACKING_PASSWORD.get()
    return (user, password) if user and password else None


def governance_server() -> str | None:
    """The governance server the registry URI names (the one that authenticates callers), or None
    for a local registry (`GovernanceClient.remote`'s rule)."""
    from mlflow_governance.client.governance import GovernanceClient

    client = GovernanceClient()
    return client.registry_uri if client.remote else None


def no_auth_args() -> list[str]:
    """``["--no-auth"]`` for a sidecar of ours on a local registry (development: there is no server to
    check callers against); nothing against a governance server, where callers are authenticated."""
    return [] if governance_server() else ["--no-auth"]


def environment_with(options: ServeOptions, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with ``options`` added for the workers."""
    from mlflow_governance.core.environment_variables import MLGOV_SERVE_OPTIONS

    out = dict(os.environ if env is None else env)
    out[MLGOV_SERVE_OPTIONS.name] = options.to_json()
    return out
