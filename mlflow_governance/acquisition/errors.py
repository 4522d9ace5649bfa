"""The acquisition's error type."""

from __future__ import annotations


class AcquisitionError(ValueError):
    """Bad input or an unusable source. The message names the problem; nothing was written."""
