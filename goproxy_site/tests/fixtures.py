"""Project-wide pytest fixtures, loaded as a plugin (`-p goproxy_site.tests.fixtures`)."""

from __future__ import annotations
