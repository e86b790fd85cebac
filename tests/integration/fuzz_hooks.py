"""schemathesis hooks of test_fuzz.py (loaded by it through SCHEMATHESIS_HOOKS): bodies it cannot make alone."""

from __future__ import annotations

import schemathesis

# A signed bundle (sync's POST /bundles) is a zip file: sent as the raw bytes generated for it, which
# the service must refuse with a 4xx that says why, never a 500.
schemathesis.serializer.alias("application/zip", "application/octet-stream")
