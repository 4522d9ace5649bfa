"""The dependency between the store and the engine runs one way: the engine uses the store.

The governed store decides with `workflow` and delegates governance operations to the governor
the composition root (`mlflow_governance.plugin`) hands it; importing the store must not pull in
the engine, and the entry points MLflow loads must name the composition root.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points


def test_store_does_not_import_the_engine():
    code = (
        "import sys, mlflow_governance.store\n"
        "print(sorted(m for m in sys.modules if m.startswith('mlflow_governance.engine')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"mlflow_governance.store imports {out}"


def test_entry_points_build_the_store_with_the_engine(tmp_path):
    targets = {e.name: e.value for e in entry_points(group="mlflow.model_registry_store")}
    assert targets == {
        scheme: "mlflow_governance.plugin:governed_store_builder"
        for scheme in ("governed-sqlite", "governed-postgresql", "governed-mysql")
    }
    from mlflow_governance import engine
    from mlflow_governance.plugin import governed_store_builder

    store = governed_store_builder(f"governed-sqlite:///{tmp_path / 'r.db'}")
    assert store.governor is engine
