"""mlflow-governance: role-gated model lifecycle, enforced inside MLflow's model registry."""

__version__ = "0.1.0"
