"""The plan catalogue: features matched by name, plans in use kept."""

from __future__ import annotations

from goproxy_site.tests.base import BaseTestCase
from plans.models import Feature, Plan
from plans.services import PlanInUse, plan_assign, plan_create, plan_delete, plan_update


class CatalogueTests(BaseTestCase):
    def test_features_are_matched_by_name_and_their_text_updated(self) -> None:
        socks = Feature.objects.create(name="socks", description="old")
        plan = plan_create(
            data={"name": "Team", "traffic_limit_bytes": 10**9},
            features=[{"name": "socks", "description": "SOCKS5 too"}, {"name": "ipv6"}],
        )
        self.assertEqual(sorted(plan.features.values_list("name", flat=True)), ["ipv6", "socks"])
        socks.refresh_from_db()
        self.assertEqual(socks.description, "SOCKS5 too")
        self.assertEqual(Feature.objects.filter(name="socks").count(), 1)
        plan_update(plan=plan, data={"price": "3.00"})
        self.assertEqual(plan.features.count(), 2)  # no features given: kept
        plan_update(plan=plan, data={}, features=[])
        self.assertEqual(plan.features.count(), 0)

    def test_a_plan_anybody_used_is_kept(self) -> None:
        unused = plan_create(data={"name": "Unused"})
        plan_delete(plan=unused)
        self.assertIs(Plan.objects.filter(name="Unused").exists(), False)
        used = plan_create(data={"name": "Used"})
        plan_assign(user_id=self.charlie.pk, plan=used)
        with self.assertRaisesMessage(PlanInUse, "make it non-public"):
            plan_delete(plan=used)
        self.assertEqual(PlanInUse.code, "protected")
