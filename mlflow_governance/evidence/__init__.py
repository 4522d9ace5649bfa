"""The evidence behind a model and its predictions: the trace of one served prediction back to
the people, approvals, runs and data behind it (`trace`), and the model's fact sheet (`factsheet`).

Owns: reading the registry's record, the audit trail and the payload database into evidence.
May import: the governance core, the client, the sidecar's payload schema; nothing above (no
server or CLI).
"""
