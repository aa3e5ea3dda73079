from __future__ import annotations

from django.apps import apps
from django.db import connections
from django.test import TestCase

from goproxy_site.db_routers import ACCOUNTS_DB, PLANS_DB, PlansRouter

ACCOUNTS_TABLES = {
    "accounts_user",
    "accounts_proxycredential",
    "auth_group",
    "auth_permission",
    "django_admin_log",
    "django_content_type",
    "django_session",
    "authtoken_token",
}
PLANS_TABLES = {
    "plans_plan",
    "plans_feature",
    "plans_plan_features",
    "plans_subscription",
    "plans_usagebucket",
    "plans_freeplanclaim",
}


class TablePlacementTests(TestCase):
    """Each schema lands only in its own database (runs on SQLite and PostgreSQL)."""

    databases = {ACCOUNTS_DB, PLANS_DB}

    def tables(self, alias: str) -> set[str]:
        with connections[alias].cursor() as cursor:
            return set(connections[alias].introspection.table_names(cursor))

    def test_accounts_db_holds_auth_and_accounts_only(self) -> None:
        tables = self.tables(ACCOUNTS_DB)
        self.assertTrue(ACCOUNTS_TABLES <= tables, ACCOUNTS_TABLES - tables)
        self.assertEqual({t for t in tables if t.startswith("plans_")}, set())

    def test_plans_db_holds_plans_only(self) -> None:
        tables = self.tables(PLANS_DB) - {"django_migrations"}
        self.assertTrue(PLANS_TABLES <= tables, PLANS_TABLES - tables)
        self.assertEqual({t for t in tables if not t.startswith("plans_")}, set())

    def test_every_model_table_is_in_exactly_its_routed_db(self) -> None:
        accounts, plans = self.tables(ACCOUNTS_DB), self.tables(PLANS_DB)
        for model in apps.get_models():
            table = model._meta.db_table
            expected, other = (
                (plans, accounts) if model._meta.app_label == "plans" else (accounts, plans)
            )
            self.assertIn(table, expected, model)
            self.assertNotIn(table, other, model)


class PlansRouterTests(TestCase):
    databases = {ACCOUNTS_DB, PLANS_DB}

    def setUp(self) -> None:
        self.router = PlansRouter()

    def test_routes_reads_and_writes_by_app(self) -> None:
        plan = apps.get_model("plans", "Plan")
        user = apps.get_model("accounts", "User")
        self.assertEqual(self.router.db_for_read(plan), PLANS_DB)
        self.assertEqual(self.router.db_for_write(plan), PLANS_DB)
        self.assertEqual(self.router.db_for_read(user), ACCOUNTS_DB)
        self.assertEqual(self.router.db_for_write(user), ACCOUNTS_DB)

    def test_migrations_only_on_their_own_db(self) -> None:
        self.assertIs(self.router.allow_migrate(PLANS_DB, "plans"), True)
        self.assertIs(self.router.allow_migrate(ACCOUNTS_DB, "plans"), False)
        for label in ("auth", "contenttypes", "sessions", "admin", "accounts", "authtoken"):
            self.assertIs(self.router.allow_migrate(ACCOUNTS_DB, label), True)
            self.assertIs(self.router.allow_migrate(PLANS_DB, label), False)

    def test_no_relation_across_databases(self) -> None:
        plan = apps.get_model("plans", "Plan")(name="x")
        user = apps.get_model("accounts", "User")(username="x")
        self.assertIs(self.router.allow_relation(plan, user), False)
        self.assertIs(self.router.allow_relation(plan, plan), True)

    def test_no_foreign_key_crosses_databases(self) -> None:
        for model in apps.get_models():
            for field in model._meta.get_fields():
                if field.is_relation and field.related_model is not None:
                    self.assertEqual(
                        model._meta.app_label == "plans",
                        field.related_model._meta.app_label == "plans",
                        f"{model.__name__}.{field.name} crosses databases",
                    )
