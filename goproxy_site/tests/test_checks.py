from __future__ import annotations

from django.conf import settings
from django.test import SimpleTestCase, override_settings

from goproxy_site.checks import check_databases


class DatabaseChecksTests(SimpleTestCase):
    def test_it_passes_with_both_aliases_and_the_router(self) -> None:
        self.assertEqual(check_databases(), [])

    def test_it_reports_a_missing_router(self) -> None:
        with override_settings(DATABASE_ROUTERS=[]):
            self.assertEqual([e.id for e in check_databases()], ["goproxy.E002"])

    def test_it_reports_a_missing_plans_alias(self) -> None:
        dbs = {"default": settings.DATABASES["default"]}
        with override_settings(DATABASES=dbs):
            self.assertIn("goproxy.E001", [e.id for e in check_databases()])
