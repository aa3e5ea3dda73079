"""The gevent forward proxy (run by `manage.py runproxy`)."""

from .compiled import discard_stale

discard_stale()
