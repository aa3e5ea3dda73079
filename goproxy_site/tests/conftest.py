"""Fixtures of goproxy_site's tests: `stack`, the whole pipeline per test."""

from __future__ import annotations

from goproxy_site.tests.support.stack import stack

__all__ = ["stack"]
