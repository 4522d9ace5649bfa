"""Telling the outside world about governance changes: the outbox's delivery to MLflow's webhooks
(`delivery`) and to the people each change concerns (`people`, through their `contacts`).

Owns: delivery of the events the core commits (`mlflow_governance.core.events`), the people's sink,
the users' contact addresses. May import: the governance core (workflow, events, schema, tags,
roles, identity, errors, engine, environment_variables) and MLflow; nothing above (no client,
server, CLI or feature). `delivery` knows its sinks only by their protocol: `people` imports
`delivery`, never the other way round.
"""
