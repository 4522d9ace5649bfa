"""Independent validation: a validator scores a registered version on data of their own choosing,
runs every monitor against the thresholds in force, writes a signed-off report and submits the
version to Model Validation Completed through the governance core (`validate.validate`)."""
