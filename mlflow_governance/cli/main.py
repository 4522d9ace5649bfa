"""``mlgov``: governance from the shell. User mistakes print a message and exit non-zero.

Each command's module is imported only when that command runs (click's lazy-loading pattern),
so ``mlgov status`` against a governance server imports neither Spark's, the sidecar's nor
MLflow's code: it starts in a fraction of the time a command on a local registry takes.
"""

from __future__ import annotations

import importlib

import click

from mlflow_governance.cli.common import GovernanceGroup

# Each command of ``mlgov`` and the modules of `mlflow_governance.cli` that register it (``users``
# gets ``set-contact`` from the notifications module). tests/test_reference.py checks this table
# against what the modules register.
COMMANDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("initiate", "transition", "field", "status", "tasks", "audit", "factsheet", "roles"),
                    ("governance",)),
    "server": ("server",),
    "users": ("server", "notifications"),
    "serve": ("serving",),
    "sources": ("acquisition",),
    "acquire": ("acquisition",),
    "train": ("training",),
    "import-model": ("training",),
    "validate": ("validation",),
    "monitors": ("validation",),
    "monitor": ("monitoring",),
    "deploy": ("deploy",),
    "explain": ("explain",),
    "demo": ("demo",),
    "trace": ("trace",),
    "events": ("events",),
    "notifications": ("notifications",),
}


class LazyGovernanceGroup(GovernanceGroup):
    """The ``mlgov`` group: registers a command's module the first time the command is asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()

    def load(self, module: str) -> None:
        if module not in self._loaded:
            self._loaded.add(module)
            importlib.import_module(f"mlflow_governance.cli.{module}").register(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for module in COMMANDS.get(cmd_name, ()):
            self.load(module)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGovernanceGroup)
@click.version_option(package_name="mlflow-governance")
def cli() -> None:
    """Governed MLOps on MLflow: lifecycle, approvals, audit trail.

    The registry is MLFLOW_REGISTRY_URI (else MLFLOW_TRACKING_URI): governed-sqlite:///PATH,
    governed-postgresql://... (acting as MLGOV_USER, development mode) or a governance server URL.
    """
