"""The governance server: MLflow's basic-auth app plus governance REST endpoints and pages.

Owns: the app of ``mlflow server --app-name governance``: users, roles, sign-in, the REST API,
the approvals pages, the outage answers. May import: everything below it except the demo and
the CLI.
"""
