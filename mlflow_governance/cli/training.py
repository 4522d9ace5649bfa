"""``mlgov train`` and ``mlgov import-model``: develop or import a governed model version."""

from __future__ import annotations

import click

from mlflow_governance.cli.common import echo_json
from mlflow_governance.training import METRICS

METRIC_CHOICES = METRICS


def _report(result, as_json: bool) -> None:
    if as_json:
        echo_json(result.summary())
        return
    click.echo(f"registered {result.model_uri} and submitted it to Model Development Completed")
    for name, value in result.fields.items():
        click.echo(f"  {name}: {value}")


def _options(*options):
    """One decorator applying ``options`` (click option decorators) in the order given."""

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


# The options ``train`` and ``import-model`` share, in two runs (each command has one of its own in between).
_data_and_model = _options(
    click.option(
        "--data", default=None, metavar="PATH", help="Training Parquet (default: the model's training_data_asset)."
    ),
    click.option("--model", "model", required=True, help="The governed model (must be Approved for Development)."),
)


def _evaluation(metric_help: str, seed_help: str):
    """``--metric``, ``--seed``, ``--experiment`` and ``--json``, with the command's own words for the first two."""
    return _options(
        click.option(
            "--metric",
            type=click.Choice(METRIC_CHOICES),
            default="roc_auc",
            show_default=True,
            help=metric_help,
        ),
        click.option("--seed", type=int, default=42, show_default=True, help=seed_help),
        click.option("--experiment", default=None, help="MLflow experiment (default: '<model>-development')."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    )


@click.command("train")
@_data_and_model
@click.option("--quick", is_flag=True, help="A small search (seconds): for tests and the demo.")
@_evaluation("Validation metric that picks the model to register.", "Seed of the split and the estimators.")
def train(data, model, quick, metric, seed, experiment, as_json) -> None:
    """Search, compare and register a new version of MODEL, then submit it as ModelDeveloper."""
    from mlflow_governance.training.develop import train as develop

    _report(develop(model, data=data, quick=quick, metric=metric, seed=seed, experiment=experiment), as_json)


@click.command("import-model")
@click.option(
    "--model-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Fitted scikit-learn classifier saved with skops (.skops); only allowlisted types load. Pickle/joblib files "
    "are refused: convert with skops.io.dump(joblib.load(FILE), 'model.skops').",
)
@_data_and_model
@click.option("--development-system", default=None, help="Where the model was built (recorded on the version).")
@_evaluation("Metric recorded as model_quality.", "Seed of the evaluation split.")
def import_model(model_file, data, model, development_system, metric, seed, experiment, as_json) -> None:
    """Register an outside scikit-learn model as a governed version of MODEL and submit it."""
    from mlflow_governance.training.importer import import_model as do_import

    result = do_import(
        model_file,
        model,
        data=data,
        metric=metric,
        seed=seed,
        development_system=development_system,
        experiment=experiment,
    )
    _report(result, as_json)


def register(cli: click.Group) -> None:
    """Add ``train`` and ``import-model`` to the ``mlgov`` group."""
    cli.add_command(train)
    cli.add_command(import_model)
