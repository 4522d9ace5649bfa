"""Running the stages together: the ``pipeline`` entry point's stage runner as the people of each
stage (`pipeline`) and the deployment of an approved version to a sidecar with its stage's
record (`deployment`).

Owns: sequencing stages, never a stage's own work. May import: the client, the sidecar and the
core; nothing above (no server, demo or CLI).
"""
