"""The storage seam's error counter (a leaf: `observability` registers it, stores count)."""

from __future__ import annotations

from prometheus_client import Counter

# Process-wide like the job histograms; a Celery worker shares it through multiprocess files.
STORAGE_ERRORS = Counter(
    "voicereel_storage_errors", "Object store operations that failed (a missing file is not "
    "an error).", ["backend", "operation"], registry=None)
