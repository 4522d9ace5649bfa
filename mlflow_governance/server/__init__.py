"""The governance server: MLflow's basic-auth app plus governance REST endpoints and pages."""
