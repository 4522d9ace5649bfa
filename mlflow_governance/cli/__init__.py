"""The ``mlgov`` command line."""
