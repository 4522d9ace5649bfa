"""The governance core: the lifecycle as data and everything that enforces and records it.

Owns: the lifecycle table (`workflow`), the engine (`engine/`: one database transaction per
action), the governed registry store and its composition root (`store`, `plugin`), the table's
effects and their replay (`effects`, `reconcile`), the audit trail (`audit`), roles, tags, the
governance tables (`schema`), the acting user (`identity`), the event outbox (`events`), the
settings and their declarations (`environment_variables`, `settings`, `config`), the errors
with their MLflow error codes (`errors`), the feature schema and the monitor configuration the
engine checks and records (`features`, `monitor_config`), and the one reach into MLflow's
private names (`mlflow_private`).
May import: MLflow, SQLAlchemy and the standard library; nothing else of this package
(tests/test_architecture.py fails on any arrow out of it).
"""
