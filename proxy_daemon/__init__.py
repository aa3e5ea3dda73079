"""The gevent forward proxy (run by `manage.py runproxy`)."""

import os

from .compiled import discard_stale, prefer_sources

discard_stale()
if os.environ.get("GOPROXY_PURE_PYTHON"):
    prefer_sources()
