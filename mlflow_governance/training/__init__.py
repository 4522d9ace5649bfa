"""Model development: data loading, model search, monitoring artifacts, registration, imports.

`mlflow_governance.training.develop.train` is what ``mlflow run . -e train`` and ``mlgov train``
call; `mlflow_governance.training.importer.import_model` registers a model built elsewhere.
"""
