"""``mlgov serve``: the governed scoring sidecar under gunicorn, with the production monitor.

Exit codes: 0 after SIGTERM/SIGINT (a clean stop), 2 bad options, 3 refused by governance (no
servable version: nothing in production, a decommissioned version, a staging request for a version
that is not under validation or deployment; or the sidecar's identity is refused), 4 unknown
model, 1 anything else (the registry or the model cannot be read, gunicorn stopped on its own).
Each is one line on stderr.
"""

from __future__ import annotations

import logging
import sys

import click

from mlflow_governance import sidecar


@click.command("serve")
@click.option("--model", required=True, help="The governed registered model to serve.")
@click.option("--alias", default=None, metavar="ALIAS",
              help="Serve the version this alias points at (production mode; default: the production alias).")
@click.option("--version", type=click.IntRange(min=1), default=None,
              help="Serve this version only: in production mode while it is the production version, with --staging "
                   "while it is under validation or deployment.")
@click.option("--staging", is_flag=True,
              help="User acceptance testing of --version N (Approved for Validation to Pre Production Review): "
                   "responses, /status and payload rows say staging.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=5001, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Request threads per worker (gthread, keep-alive); 1 uses gunicorn's sync workers.")
@click.option("--payload-url", default=sidecar.configured_payload_url, metavar="URL",
              help="SQLAlchemy URL of the payload database (default: the MLGOV_PAYLOAD_URL setting, the one the "
                   "governance server's trace route reads, else sqlite:///./mlgov-payloads.db; PostgreSQL when "
                   "replicas share it). This option wins over MLGOV_PAYLOAD_URL.")
@click.option("--spool-dir", default=None, metavar="DIR",
              help="Where rows wait while the payload database is down (default: ./mlgov-spool).")
@click.option("--monitor-every-rows", type=click.IntRange(min=0), default=sidecar.DEFAULT_MONITOR_EVERY_ROWS,
              show_default=True, help="Evaluate the monitors after this many new rows (0: not by rows).")
@click.option("--monitor-every-seconds", type=click.FloatRange(min=0), default=sidecar.DEFAULT_MONITOR_EVERY_SECONDS,
              show_default=True,
              help="Evaluate the monitors at least this often when there are new rows (0: not by time). "
                   "Both 0 turns the production monitor off.")
@click.option("--monitor-min-interval", "monitor_min_interval", type=click.FloatRange(min=0),
              default=sidecar.DEFAULT_MONITOR_MIN_INTERVAL_SECONDS, show_default=True,
              help="Seconds at least between two evaluations, however fast rows arrive.")
@click.option("--monitor-cpu-share", type=click.FloatRange(min=0, max=1, min_open=True),
              default=sidecar.DEFAULT_MONITOR_CPU_SHARE, show_default=True,
              help="After an evaluation, wait until the monitor has used at most this share of one core (heavy "
                   "traffic cannot make it evaluate back to back).")
@click.option("--monitor-report-every", "monitor_report_every", type=click.FloatRange(min=0),
              default=sidecar.DEFAULT_MONITOR_REPORT_EVERY_SECONDS, show_default=True,
              help="Attach evidently's HTML drift report (1-3 CPU s each) to an evaluation's run at most this often, "
                   "and always on a breach (0: every evaluation).")
@click.option("--max-body-bytes", type=click.IntRange(min=1024), default=sidecar.DEFAULT_MAX_BODY_BYTES,
              show_default=True, help="Larger request bodies get 413.")
@click.option("--usability-cache-seconds", type=click.FloatRange(min=0, min_open=True),
              default=sidecar.DEFAULT_CACHE_SECONDS, show_default=True,
              help="How long a governance read (version, stage, usability) is used; the sidecar fails closed (503) "
                   "when the registry cannot be read for longer.")
@click.option("--batch-window-ms", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Micro-batching: concurrent requests of a worker wait at most this long to be scored in one "
                   "predict, and only while others are arriving (0: off).")
@click.option("--timeout", type=click.IntRange(min=1), default=60, show_default=True,
              help="gunicorn worker timeout in seconds.")
@click.option("--no-auth", "no_auth", is_flag=True,
              help="Local development only: nobody is authenticated, and every answer says so. Refused against a "
                   "governance server.")
@click.option("--auth-cache-seconds", type=click.FloatRange(min=0), default=sidecar.DEFAULT_AUTH_CACHE_SECONDS,
              show_default=True, help="How long a worker trusts the governance server's answer about a caller (a "
                                      "revoked user is refused within this time; 0 asks on every request).")
@click.option("--max-rows", type=click.IntRange(min=1), default=sidecar.DEFAULT_MAX_ROWS, show_default=True,
              help="Rows per /invocations request (and labels per /feedback request); more get 413.")
@click.option("--max-value-chars", type=click.IntRange(min=1), default=sidecar.DEFAULT_MAX_VALUE_CHARS,
              show_default=True, help="Characters per text value; longer values get 413.")
@click.option("--explain-per-minute", type=click.IntRange(min=1), default=sidecar.DEFAULT_EXPLAIN_PER_MINUTE,
              show_default=True, help="/explain requests per caller per minute on each worker; more get 429.")
@click.option("--explain-queue", type=click.IntRange(min=0), default=sidecar.DEFAULT_EXPLAIN_QUEUE,
              show_default=True, help="Explanations that may wait behind the running one on each worker; more get "
                                      "429 with Retry-After.")
def serve_command(model, alias, version, staging, host, port, workers, threads, payload_url, spool_dir,
                  monitor_every_rows, monitor_every_seconds, monitor_min_interval, monitor_cpu_share,
                  monitor_report_every, max_body_bytes, usability_cache_seconds,
                  batch_window_ms, timeout, no_auth, auth_cache_seconds, max_rows, max_value_chars,
                  explain_per_minute, explain_queue):
    """Serve a governed model: POST /invocations, /explain, /feedback, GET /health, /status, /metrics.

    Every route but /health needs a governance server user (basic-auth): READ on the model to score,
    explain and read /status and /metrics; the ModelMonitor role for /feedback, ModelOwner for
    /feedback/correct. --no-auth (local registry only) turns that off for development.

    Production mode scores with the Ready to Use version of the production alias, refuses with 423
    while its usability is reject and with 410 once it is decommissioned; --version N --staging
    serves a version under validation for acceptance tests. The sidecar's governance identity is the
    configured one (MLGOV_USER on a local registry, MLFLOW_TRACKING_USERNAME/PASSWORD on a server).
    """
    from mlflow_governance.core import config
    from mlflow_governance.sidecar.server import ServeError, ServerOptions, run

    logging.basicConfig(level=logging.WARNING, format="mlgov serve: %(message)s")
    production = config.production_alias()
    if alias is not None and version is not None:
        raise click.UsageError("give either --alias or --version, not both")
    if alias is not None and not config.is_production_alias(alias):
        raise click.BadParameter(f"production mode serves the {production!r} alias only; use --version N "
                                 "--staging for a version under validation", param_hint="--alias")
    if staging and version is None:
        raise click.UsageError("--staging needs --version N")
    options = sidecar.ServeOptions(
        model=model, alias=None if version is not None else production, version=version, staging=staging,
        payload_url=payload_url, spool_dir=spool_dir, max_body_bytes=max_body_bytes,
        usability_cache_seconds=usability_cache_seconds, batch_window_ms=batch_window_ms if threads > 1 else 0.0,
        no_auth=no_auth, auth_cache_seconds=auth_cache_seconds, max_rows=max_rows, max_value_chars=max_value_chars,
        explain_per_minute=explain_per_minute, explain_queue=explain_queue)
    server = ServerOptions(host=host, port=port, workers=workers, threads=threads, timeout=timeout,
                           monitor_every_rows=monitor_every_rows, monitor_every_seconds=monitor_every_seconds,
                           monitor_min_interval_seconds=monitor_min_interval, monitor_cpu_share=monitor_cpu_share,
                           monitor_report_every_seconds=monitor_report_every)
    try:
        code = run(options, server)
    except ServeError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code)


def register(cli: click.Group) -> None:
    cli.add_command(serve_command)

