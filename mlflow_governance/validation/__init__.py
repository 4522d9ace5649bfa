"""Independent validation: a validator scores a registered version on data of their own choosing,
runs every monitor against the thresholds in force, writes a signed-off report and submits the
version to Model Validation Completed through the governance core (`validate.validate`).

Owns: the validator's run, its report and the staging smoke test. May import: the core, safe,
the client, training, monitoring, scoring and the sidecar (its request bodies for the smoke
test); nothing above.
"""
