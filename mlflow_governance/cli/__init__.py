"""The ``mlgov`` command line: one module per group of commands, each with a ``register(cli)``.

`main` loads a command's module only when the command runs (its ``COMMANDS`` table). Against a
governance server the commands talk REST through `mlflow_governance.client.governance`; `common` and those
modules import no MLflow at import time, so a command that succeeds against a server starts
without paying for MLflow's import (only an error, raised as MLflow's exception, imports it).

Owns: the ``mlgov`` commands: options, one-line errors, exit codes. May import: everything
below it; nothing imports it.
"""
