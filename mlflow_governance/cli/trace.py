"""``mlgov trace REQUEST_ID``: the evidence behind one served prediction (`mlflow_governance.evidence.trace`).

Reads the scored row from the sidecar's payload database (``--payload-url``, default the
sidecar's own default; against a governance server without ``--payload-url``, the server's trace
route answers from the payload database it is configured with) and follows it to the version, its approvals, validation, development
run, training dataset and monitoring, through the configured registry (local, or a governance
server with the caller's credentials). With ``--payload-url`` the row's model is first read as
the caller (its governance status): a caller the registry refuses (MLflow's per-model READ
permission on a governance server) is refused here too, before anything of the chain is read,
as the server's trace route refuses them. Exit 2 for a malformed request id or URL (a file that
is not a database included), 3 when the caller may not read the row's model, 4 for an unknown
request id, 6 when the payload database does not answer; one line on stderr, URLs masked.
"""

from __future__ import annotations

import sys

import click

from mlflow_governance.cli.common import echo_json

EXIT_CODES = {"invalid": 2, "refused": 3, "unknown": 4, "unavailable": 6}
REFUSALS = ("PERMISSION_DENIED", "UNAUTHENTICATED")


def reader_check(governance):
    """``authorize(model)`` for `mlflow_governance.trace.trace`: read the model's status as the
    caller; a refusal by the registry (403/401) is a `TraceError` ``refused`` (exit 3). Any
    other failure is left to the chain, which reports the link it could not follow."""
    from mlflow.exceptions import MlflowException

    from mlflow_governance.evidence.trace import TraceError
    from mlflow_governance.safe.urls import scrub

    def authorize(model: str) -> None:
        try:
            governance.status(model)
        except MlflowException as exc:
            if exc.error_code in REFUSALS:
                reason = scrub((exc.message or str(exc)).strip().splitlines()[0] if (exc.message or "").strip()
                               else exc.error_code)
                raise TraceError("refused", f"the request was answered by model {model!r}, which you may not read: "
                                            f"{reason}") from None

    return authorize


@click.command("trace")
@click.argument("request_id")
@click.option("--payload-url", default=None, metavar="URL",
              help="The sidecar's payload database (default: sqlite:///./mlgov-payloads.db, the sidecar's default).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of standard output (never replaces a file without --force).")
@click.option("--force", is_flag=True, help="Replace an existing --output file.")
def trace_command(request_id, payload_url, fmt, output, force):
    """Follow REQUEST_ID (a request id the sidecar returned) back to the people, evidence and data."""
    from mlflow_governance.evidence.trace import (
        ClientSources,
        TraceError,
        normalise_request_id,
        render_html,
        render_text,
    )
    from mlflow_governance.evidence.trace import trace as follow
    from mlflow_governance.safe import outputs
    from mlflow_governance.sidecar import default_payload_url

    try:
        request_id = normalise_request_id(request_id)
        target = outputs.check_output_path(output, force) if output else None
        sources = ClientSources()
        remote = getattr(sources.governance, "remote", False)
        if remote and payload_url is None:  # the server reads its own payload database
            result = sources.governance.backend.trace(request_id)
        else:
            result = follow(request_id, payload_url or default_payload_url(), sources,
                            authorize=reader_check(sources.governance))
    except TraceError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(EXIT_CODES[exc.kind])
    if fmt == "json" and target is None:
        echo_json(result)
        return
    import json

    text = json.dumps(result, indent=2, default=str) + "\n" if fmt == "json" else \
        render_html(result) if fmt == "html" else render_text(result)
    if target is None:
        click.echo(text, nl=False)
    else:
        outputs.write_text(target, text, force)
        click.echo(f"wrote {target}")


def register(cli: click.Group) -> None:
    cli.add_command(trace_command)
