"""`mlgov demo`: the course's four days played end to end by seven people on the embedded SQLite
default (`walkthrough`), with real scoring traffic and feedback against the sidecars (`serving`).

Owns: the walk-through only. May import everything below it (acquisition, training,
validation, the sidecar, deployment, evidence); nothing imports it but the CLI.
"""
