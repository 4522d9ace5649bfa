"""MLproject entry point ``monitor``: ``mlflow run . -e monitor -P model=NAME -P payload_url=URL [-P version=N]``.

Runs ``mlgov monitor`` (one production-monitor evaluation over the payload table) as the acting
ModelMonitor; exit 5 when the window breached (usability is then reject).

The payload database's password never goes in ``-P`` (MLflow records every ``-P`` value as a run
parameter before this file runs): give ``payload_url`` without one and set
``MLGOV_DB_PASSWORD_PAYLOAD`` (or, for PostgreSQL, ``PGPASSWORD`` / ``~/.pgpass``) in the
environment of ``mlflow run``. A URL with a password or a secret query value is refused (exit 2,
one line) and erased from the run's recorded parameters (`mlflow_governance.safe.project_secrets`).
"""

from __future__ import annotations

import pathlib
import sys

# `mlflow run <checkout>` runs this file from that checkout: use its package, not another install.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from mlflow_governance.cli.mlproject import EntryPoint, Param
from mlflow_governance.cli.monitoring import register

ENTRY = EntryPoint("monitor", __doc__, [
    Param("model"),
    Param("payload_url", url=True, password=True),
    Param("version", "", pass_as="optional"),
    Param("window_rows", "5000"),
], register=register)
main = ENTRY.main


if __name__ == "__main__":
    main(sys.argv[1:])
