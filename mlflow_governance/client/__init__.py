"""The governance client: `governance.GovernanceClient` acts through the engine on the registry
database (local) or through a governance server (`rest.RestGovernance`, MLflow's
``mlflow.app.client`` entry point), with one interface for both.

Owns: choosing the backend and the light REST client (which imports no MLflow, so `mlgov status`
against a server starts fast). This ``__init__`` imports nothing: importing `client.rest` must
not load the local backend. May import: the core and notifications; nothing above.
"""
