"""Model development: data loading, model search, monitoring artifacts, registration, imports.

`mlflow_governance.training.develop.train` is what ``mlflow run . -e train`` and ``mlgov train``
call; `mlflow_governance.training.importer.import_model` registers a model built elsewhere.

Owns: developing or importing a version and what development records on it (statistics, drift
detection model, quality). May import: the core, safe and the client; nothing above.
"""

# The metrics every candidate is scored on (and that may pick the winner). Defined here, free of
# heavy imports, so the CLI can offer them without loading scikit-learn at start-up.
METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
