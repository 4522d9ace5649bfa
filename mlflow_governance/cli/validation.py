"""``mlgov validate`` and ``mlgov monitors show|set``: independent validation and its rules.

Exit codes as everywhere in ``mlgov`` (2 bad input, 3 refused, 4 not found), plus 5 for a
validation whose monitors breached: the run and its report are logged, the version is not
submitted (pass ``--override-comment`` to submit it anyway, audited with the overridden figures),
and 7 for a failed UAT smoke test (``--smoke-test`` / ``--smoke-url``): the run and its report are
logged, the version is not submitted, and no override applies. A ``--smoke-url`` whose ``/status``
does not answer for this model and version in staging mode is refused (3) before anything is written.
"""

from __future__ import annotations

import json
import sys

import click

from mlflow_governance.cli.common import echo_json

EXIT_BREACHED = 5
EXIT_SMOKE_FAILED = 7


@click.command("validate")
@click.option("--model", required=True, help="The governed model.")
@click.option("--version", required=True, type=int, help="The version to validate (Approved for Validation).")
@click.option("--data", required=True, metavar="PATH_OR_URI",
              help="Validation Parquet with the model's columns (and DELAYED where known), e.g. a later month.")
@click.option("--config", "config_path", default=None, metavar="FILE",
              help="Monitor configuration (YAML or JSON); default: the version's recorded one, else the defaults.")
@click.option("--override-comment", default=None, metavar="TEXT",
              help="Submit even though a monitor breached, saying why (audited with the overridden figures).")
@click.option("--experiment", default=None, help="Experiment of the validation run (default: MODEL-validation).")
@click.option("--smoke-test", is_flag=True,
              help="UAT deployment: start a staging sidecar of the version (mlgov serve --staging, as you) and record "
                   "a REST smoke test in the report; a failed one is not submitted (exit 7).")
@click.option("--smoke-url", default=None, metavar="URL",
              help="Run the REST smoke test against this running staging sidecar of the version instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate_command(model, version, data, config_path, override_comment, experiment, smoke_test, smoke_url,
                     as_json):
    """Validate a version as the ModelValidator and submit it to Model Validation Completed."""
    from mlflow_governance.validation.validate import SmokeTestFailed, ValidationBreached, validate

    if smoke_test and (smoke_url or "").strip():
        raise click.UsageError("give --smoke-test (start a staging sidecar) or --smoke-url (test a running one), "
                               "not both")
    try:
        result = validate(model, version, data, config_path, override_comment, experiment,
                          smoke_test=smoke_test, smoke_url=smoke_url)
    except SmokeTestFailed as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(EXIT_SMOKE_FAILED)
    except ValidationBreached as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(EXIT_BREACHED)
    if as_json:
        echo_json(result.summary())
        return
    click.echo(f"validated models:/{model}/{version}: {result.verdict} (configuration {result.digest})")
    for key, f in result.figures.items():
        value = "undefined" if f["value"] is None else f"{f['value']:.4f}"
        bound = f" {f['comparison']} {f['threshold']}" if f.get("threshold") is not None else ""
        click.echo(f"  {key}: {value}{bound} [{f['verdict']}]")
    if result.smoke_test is not None:
        from mlflow_governance.validation.smoke import summary

        click.echo(summary(result.smoke_test))
    click.echo(f"report: {result.fields['validation_report']}; submitted to Model Validation Completed")


@click.group("monitors")
def monitors() -> None:
    """The monitor configuration of a version (thresholds, features, groups)."""


@monitors.command("show")
@click.argument("model")
@click.option("--version", required=True, type=int)
def monitors_show(model, version):
    """Print the configuration in force (the recorded one, else the defaults) and its digest."""
    from mlflow_governance.client.governance import GovernanceClient
    from mlflow_governance.core.monitor_config import config_in_force

    config, recorded = config_in_force(GovernanceClient().status(model, version)["version"])
    origin = "recorded on the version" if recorded else "defaults: none recorded on the version yet"
    click.echo(f"# models:/{model}/{version} monitor configuration ({origin})")
    click.echo(f"# digest {config.digest()}")
    click.echo(json.dumps(config.to_dict(), indent=2, sort_keys=True))


@monitors.command("set")
@click.argument("model")
@click.option("--version", required=True, type=int)
@click.option("--config", "config_path", required=True, metavar="FILE", help="YAML or JSON configuration.")
def monitors_set(model, version, config_path):
    """Replace the configuration (ModelValidator in validation, ModelMonitor from productionization on)."""
    from mlflow_governance.client.governance import GovernanceClient
    from mlflow_governance.core.monitor_config import load_config

    config = load_config(config_path)
    GovernanceClient().set_monitors(model, version, config.to_dict())
    click.echo(f"models:/{model}/{version}: monitor configuration {config.digest()} recorded")


def register(cli: click.Group) -> None:
    cli.add_command(validate_command)
    cli.add_command(monitors)
