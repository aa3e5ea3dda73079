"""Errors services raise that every interface (API, portal, admin) renders the same way.

They live below the apps so the API's error handler can map them without importing any
app's services.
"""

from __future__ import annotations


class ConflictError(Exception):
    """The change conflicts with existing data; the API answers 409 with `code`."""

    code = "conflict"
