"""How ``mlgov serve`` runs the sidecar: gunicorn as a child process, this module as its config.

`run` checks governance and the model before anything starts (exit 3 when governance does not let
the version be served), creates the payload tables, makes a fresh ``PROMETHEUS_MULTIPROC_DIR``,
then starts ``gunicorn --config python:mlflow_governance.sidecar.server ...
mlflow_governance.sidecar.server:application()`` from the same environment (never Flask's
development server) and, unless monitoring is off, the production monitor
(`mlflow_governance.sidecar.watch.Watcher`) in a thread of its own process. SIGTERM and SIGINT
are forwarded to gunicorn as SIGTERM (a graceful stop: workers finish their requests and flush
their payload rows), and the monitor is stopped.

As gunicorn's configuration module it provides the hooks:

* ``post_fork``: the worker limits its numeric thread pools before NumPy is imported (OpenMP,
  OpenBLAS, MKL, BLIS, numexpr: one thread each), because two workers of a gradient boosting
  pipeline on two cores, each starting one OpenMP thread per core per ``predict``, fall to a few
  requests per second; ``post_worker_init`` applies threadpoolctl's ``threadpool_limits(1)``
  too, for libraries already loaded;
* ``worker_exit``: flush the worker's payload writer (to the database, else to its spool);
* ``on_starting`` (in the master, before the fork): the connection table of the workers
  (`mlflow_governance.sidecar.worker`, which spreads keep-alive connections over them), and the
  modules every worker needs (`preimport`: the scoring app, MLflow, scikit-learn, skops), imported
  once in the master with the thread limits already set, so that each worker forks with them
  loaded instead of importing them again (some 5 CPU seconds per worker, and per replacement
  worker after a crash);
* ``child_exit`` (in the master): mark the worker's Prometheus files dead and free its slot there;
* ``when_ready``: a master thread that stops gunicorn if ``mlgov serve`` itself dies.

Importing this module is cheap (gunicorn's master imports it before it reads its settings): no
NumPy, Flask or MLflow; those come with ``on_starting``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_governance.sidecar import (
    DEFAULT_MONITOR_CPU_SHARE,
    DEFAULT_MONITOR_EVERY_ROWS,
    DEFAULT_MONITOR_EVERY_SECONDS,
    DEFAULT_MONITOR_MIN_INTERVAL_SECONDS,
    DEFAULT_MONITOR_REPORT_EVERY_SECONDS,
    ServeOptions,
    environment_with,
)

log = logging.getLogger("mlflow_governance.sidecar")

THREAD_LIMIT_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                     "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
PARENT_POLL_SECONDS = 1.0
WATCHER_RESTART_SECONDS = 10.0
MONITOR_NICENESS = 10  # the monitor thread's niceness: scoring first, but the monitor is never starved
EXIT_BAD_OPTIONS, EXIT_REFUSED, EXIT_UNKNOWN_MODEL, EXIT_OTHER = 2, 3, 4, 1


# --- gunicorn settings and hooks (this module is gunicorn's --config) ----------------------------

#: gunicorn 26's control socket lives at one path per user: several sidecars would share it.
control_socket_disable = True


def limit_threads_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """One thread per numeric library, set in ``env`` (default: this process's environment)."""
    target = os.environ if env is None else env
    for name in THREAD_LIMIT_VARS:
        target[name] = "1"
    return target  # type: ignore[return-value]


def limit_thread_pools() -> None:
    """threadpoolctl's limit for the libraries already loaded (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def post_fork(server: Any, worker: Any) -> None:
    limit_threads_environment()


def post_worker_init(worker: Any) -> None:
    limit_thread_pools()
    close_idle_connections_on_exit(worker)


def close_idle_connections_on_exit(worker: Any) -> None:
    """On SIGTERM, close the gthread worker's idle keep-alive connections at once.

    gunicorn 26's gthread worker waits for them to time out, but only looks again when the whole
    graceful timeout has passed, so one idle client kept a worker for 30 s, and the master then
    killed it before its payload rows were flushed. In-flight requests still finish.
    """
    queue, idle = getattr(worker, "method_queue", None), getattr(worker, "keepalived_conns", None)
    original = getattr(worker, "handle_exit", None)
    if queue is None or idle is None or original is None:
        return

    def close_idle() -> None:
        while worker.keepalived_conns:
            conn = worker.keepalived_conns.popleft()
            try:
                worker.poller.unregister(conn.sock)
            except (OSError, KeyError, ValueError):
                pass
            worker.nr_conns -= 1
            conn.close()

    def handle_exit(sig: int, frame: Any) -> None:
        original(sig, frame)
        queue.defer(close_idle)

    worker.handle_exit = handle_exit
    signal.signal(signal.SIGTERM, handle_exit)


def worker_exit(server: Any, worker: Any) -> None:
    from mlflow_governance.sidecar import payloads

    payloads.close_all()


def child_exit(server: Any, worker: Any) -> None:
    from mlflow_governance.sidecar import worker as balanced
    from mlflow_governance.sidecar.metrics import mark_dead

    mark_dead(worker.pid)
    balanced.forget(worker.pid)


#: What every worker imports to serve: loaded by the master before it forks them.
PREIMPORT = ("numpy", "pandas", "flask", "mlflow", "mlflow_governance.client.governance", "mlflow_governance.safe.model_files",
             "mlflow_governance.sidecar.app", "skops.io", "sklearn.pipeline", "sklearn.compose",
             "sklearn.preprocessing", "sklearn.linear_model", "sklearn.ensemble")


def preimport(modules: tuple[str, ...] = PREIMPORT) -> list[str]:
    """Import ``modules`` in this process with one thread per numeric library (the workers' limit,
    set before NumPy loads); returns the ones that could not be imported (a worker will meet the
    same error itself and say so)."""
    import importlib

    limit_threads_environment()
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the worker imports it again and reports the error
            missing.append(name)
    return missing


def on_starting(server: Any) -> None:
    from mlflow_governance.sidecar import worker as balanced

    balanced.create_table()
    missing = preimport()
    if missing:
        log.warning("could not import %s before forking the workers", ", ".join(missing))


def when_ready(server: Any) -> None:
    parent = os.getppid()

    def watch_parent() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch_parent, name="mlgov-parent-watch", daemon=True).start()


def application() -> Any:
    """gunicorn's app factory: the Flask app for the options ``mlgov serve`` put in the environment."""
    limit_threads_environment()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: "
                        "%(message)s")
    from mlflow_governance.sidecar.app import create_app

    return create_app(ServeOptions.from_environment())


# --- mlgov serve ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerOptions:
    """How gunicorn runs the app and how often the monitor looks at the traffic."""

    host: str = "127.0.0.1"
    port: int = 5001
    workers: int = 2
    threads: int = 1
    timeout: int = 60
    graceful_timeout: int = 30
    monitor_every_rows: int = DEFAULT_MONITOR_EVERY_ROWS
    monitor_every_seconds: float = DEFAULT_MONITOR_EVERY_SECONDS
    monitor_min_interval_seconds: float = DEFAULT_MONITOR_MIN_INTERVAL_SECONDS
    monitor_cpu_share: float = DEFAULT_MONITOR_CPU_SHARE
    monitor_report_every_seconds: float = DEFAULT_MONITOR_REPORT_EVERY_SECONDS

    @property
    def monitoring(self) -> bool:
        return bool(self.monitor_every_rows or self.monitor_every_seconds)


class ServeError(Exception):
    """``mlgov serve`` cannot start or stopped abnormally; ``exit_code`` as documented."""

    def __init__(self, message: str, exit_code: int = EXIT_OTHER):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def gunicorn_command(server: ServerOptions) -> list[str]:
    """The gunicorn command line of the sidecar (gunicorn of this interpreter's environment)."""
    binary = Path(sys.executable).parent / "gunicorn"
    base = [str(binary)] if binary.exists() else [sys.executable, "-m", "gunicorn"]
    worker = ["--worker-class", "mlflow_governance.sidecar.worker.BalancedThreadWorker", "--threads",
              str(server.threads)] if server.threads > 1 else \
        ["--worker-class", "sync"]
    return [
        *base,
        "--config", "python:mlflow_governance.sidecar.server",
        "--bind", f"{server.host}:{server.port}",
        "--workers", str(server.workers),
        *worker,
        "--timeout", str(server.timeout),
        "--graceful-timeout", str(server.graceful_timeout),
        "--keep-alive", "5",
        "--log-level", "info",
        "--error-logfile", "-",
        "mlflow_governance.sidecar.server:application()",
    ]


def preflight(options: ServeOptions) -> Any:
    """Governance and the model checked before serving: the Verdict, or ServeError (exit 3/4/1)."""
    from mlflow.exceptions import MlflowException

    from mlflow_governance.sidecar import gate

    try:
        verdict = gate.check_servable(options)
    except gate.NotServable as exc:
        raise ServeError(str(exc), EXIT_UNKNOWN_MODEL if exc.reason == "unknown_model" else EXIT_REFUSED) from None
    except MlflowException as exc:
        refused = exc.error_code in ("PERMISSION_DENIED", "UNAUTHENTICATED")
        raise ServeError(f"cannot read governance of {options.model!r}: {exc.message}",
                         EXIT_REFUSED if refused else EXIT_OTHER) from None
    if verdict.version is None:
        raise ServeError(f"{options.model} has no version to serve", EXIT_REFUSED)
    try:
        check_model_document(options.model, int(verdict.version))
    except Exception as exc:  # noqa: BLE001 - a model that cannot be checked cannot be served
        raise ServeError(f"cannot serve models:/{options.model}/{verdict.version}: "
                         f"{getattr(exc, 'message', None) or exc}", EXIT_OTHER) from None
    return verdict


def check_model_document(model: str, version: int) -> None:
    """The version's MLmodel file: a model the loading policy lets the workers load
    (`model_files.sklearn_flavor`: scikit-learn saved with skops) with a signature the sidecar can
    check (the workers load the model itself, under the skops allowlist)."""
    import mlflow
    import yaml

    from mlflow_governance.safe.model_files import sklearn_flavor
    from mlflow_governance.sidecar.bodies import columns_from_mlmodel

    with tempfile.TemporaryDirectory(prefix="mlgov-serve-check-") as tmp:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model}/{version}/MLmodel", dst_path=tmp)
        document = yaml.safe_load(Path(path).read_text()) or {}
    sklearn_flavor(document, "the model")  # preflight's message names models:/MODEL/VERSION
    columns_from_mlmodel(document)


def check_authentication(options: ServeOptions) -> None:
    """Refuse to start a sidecar nobody could call safely: ``--no-auth`` against a governance server
    (exit 2), authentication without a server to ask (exit 2), or a server that cannot answer who a
    caller is (the sidecar's own identity is asked once: exit 3 when it is refused, 1 otherwise)."""
    from mlflow_governance.sidecar import access, governance_server
    from mlflow_governance.sidecar.app import authenticator

    if options.no_auth:
        if governance_server():
            raise ServeError("--no-auth is refused against a governance server: every caller of a governed "
                             "model's sidecar must be authenticated (drop --no-auth)", EXIT_BAD_OPTIONS)
        return
    try:
        checker = authenticator(options)
    except ValueError as exc:
        raise ServeError(str(exc), EXIT_BAD_OPTIONS) from None
    own = _own_authorization()
    if own is None:
        raise ServeError("the sidecar's own identity is missing: set MLFLOW_TRACKING_USERNAME and "
                         "MLFLOW_TRACKING_PASSWORD", EXIT_REFUSED)
    answer = checker.ask(own)
    if isinstance(answer, access.Refused):
        code = EXIT_REFUSED if answer.status in (401, 403, 423) else EXIT_OTHER
        raise ServeError(f"the governance server does not confirm the sidecar's identity for {options.model!r} "
                         f"(HTTP {answer.status}): {answer.message}", code)


def _own_authorization() -> str | None:
    """The sidecar's own basic-auth header (`client_credentials`: MLflow's ``MLFLOW_TRACKING_USERNAME``
    and ``PASSWORD``), or None."""
    import base64

    from mlflow_governance.sidecar import client_credentials

    own = client_credentials()
    if own is None:
        return None
    return "Basic " + base64.b64encode(f"{own[0]}:{own[1]}".encode()).decode("ascii")


def prepare_payload_tables(url: str) -> None:
    """Create the payload tables once, before the workers (they spool if the database is down)."""
    import sqlalchemy as sa

    from mlflow_governance.sidecar import payloads, schema

    try:
        engine = payloads.make_engine(url)
        try:
            schema.create_all(engine)
        finally:
            engine.dispose()
    except sa.exc.SQLAlchemyError as exc:
        log.warning("payload database not reachable at start (%s): workers spool until it is",
                    payloads._short(exc))


def _lower_priority() -> None:
    """Run the calling thread at a lower CPU priority (Linux: niceness is per thread), so that on
    a saturated machine the scoring workers come first and the monitor uses what is left."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), MONITOR_NICENESS)
    except (AttributeError, OSError):
        pass


def _watch(options: ServeOptions, server: ServerOptions, stop: threading.Event) -> threading.Thread | None:
    """The production monitor in a thread of this process (None when off or not installed)."""
    if not server.monitoring:
        return None
    try:
        from mlflow_governance.sidecar.watch import Watcher
    except ImportError as exc:
        log.warning("production monitoring is not available (%s): serving without it", exc)
        return None

    def loop() -> None:
        _lower_priority()
        while not stop.is_set():
            try:
                Watcher(model=options.model, version=options.version, alias=options.alias,
                        payload_url=options.payload_url, every_rows=server.monitor_every_rows,
                        every_seconds=server.monitor_every_seconds, staging=options.staging,
                        min_interval_seconds=server.monitor_min_interval_seconds,
                        cpu_share=server.monitor_cpu_share,
                        report_every_seconds=server.monitor_report_every_seconds).loop(stop)
            except Exception:  # noqa: BLE001 - the monitor is restarted; scoring goes on
                log.exception("production monitor stopped; restarting in %.0fs", WATCHER_RESTART_SECONDS)
                stop.wait(WATCHER_RESTART_SECONDS)
                continue
            return

    thread = threading.Thread(target=loop, name="mlgov-monitor", daemon=True)
    thread.start()
    return thread


def run(options: ServeOptions, server: ServerOptions) -> int:
    """Serve until SIGTERM/SIGINT; the exit code (0 after a requested stop)."""
    problems = options.problems()
    if problems:
        raise ServeError("; ".join(problems), EXIT_BAD_OPTIONS)
    options = options.resolved()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    check_authentication(options)
    verdict = preflight(options)
    prepare_payload_tables(options.payload_url or "")
    metrics_dir = tempfile.mkdtemp(prefix="mlgov-serve-metrics-")
    env = environment_with(options)
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    limit_threads_environment(env)
    stop = threading.Event()
    requested: list[int] = []
    mode = "staging" if options.staging else "production"
    refusal = f" (refusing: {verdict.refusal.message})" if verdict.refusal else ""
    who = "NOBODY IS AUTHENTICATED (--no-auth: local development only)" if options.no_auth else \
        "callers authenticated by the governance server"
    log.warning("serving models:/%s/%s (%s) on http://%s:%s with %d worker(s); %s; payloads to %s%s", options.model,
                verdict.version, mode, server.host, server.port, server.workers, who,
                _shown_url(options.payload_url), refusal)
    proc = subprocess.Popen(gunicorn_command(server), env=env)

    def forward(signum: int, _frame: Any) -> None:
        requested.append(signum)
        stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    watcher = None
    try:
        watcher = _watch(options, server, stop)
        code = proc.wait()
    finally:
        stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(server.graceful_timeout + 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for s, handler in old.items():
            signal.signal(s, handler)
        if watcher is not None:
            watcher.join(10)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if requested:
        return 0
    raise ServeError(f"gunicorn stopped on its own with exit code {code} (see its log above)", EXIT_OTHER)


def _shown_url(url: str | None) -> str:
    """``url`` with its password and secret query values masked (the start-up log)."""
    from mlflow_governance.safe.urls import mask_url

    return mask_url(url) if url else "(none)"
