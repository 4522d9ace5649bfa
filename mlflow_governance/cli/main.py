"""``mlgov``: governance from the shell. User mistakes print a message and exit non-zero."""

from __future__ import annotations

import click

from mlflow_governance.cli.acquisition import register as register_acquisition
from mlflow_governance.cli.common import GovernanceGroup
from mlflow_governance.cli.demo import register as register_demo
from mlflow_governance.cli.deploy import register as register_deploy
from mlflow_governance.cli.events import register as register_events
from mlflow_governance.cli.explain import register as register_explain
from mlflow_governance.cli.governance import register as register_governance
from mlflow_governance.cli.monitoring import register as register_monitoring
from mlflow_governance.cli.notifications import register as register_notifications
from mlflow_governance.cli.server import register as register_server
from mlflow_governance.cli.serving import register as register_serving
from mlflow_governance.cli.trace import register as register_trace
from mlflow_governance.cli.training import register as register_training
from mlflow_governance.cli.validation import register as register_validation


@click.group(cls=GovernanceGroup)
@click.version_option(package_name="mlflow-governance")
def cli() -> None:
    """Governed MLOps on MLflow: lifecycle, approvals, audit trail.

    The registry is MLFLOW_REGISTRY_URI (else MLFLOW_TRACKING_URI): governed-sqlite:///PATH,
    governed-postgresql://... (acting as MLGOV_USER, development mode) or a governance server URL.
    """


register_governance(cli)
register_server(cli)
register_serving(cli)
register_acquisition(cli)
register_training(cli)
register_validation(cli)
register_monitoring(cli)
register_deploy(cli)
register_explain(cli)
register_demo(cli)
register_trace(cli)
register_events(cli)
register_notifications(cli)
