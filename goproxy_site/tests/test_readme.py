"""The README documents every environment variable the settings read, and its API
example runs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from django.test import LiveServerTestCase, SimpleTestCase

from accounts.models import User
from accounts.services import api_token_issue, user_create
from plans.models import Subscription

ROOT = Path(__file__).resolve().parents[2]
ENV_READ = re.compile(r"""env(?:\.\w+)?\(\s*["']([A-Z][A-Z0-9_]+)["']""")


class ReadmeEnvironmentTests(SimpleTestCase):
    def test_every_setting_variable_is_documented(self) -> None:
        readme = (ROOT / "README.md").read_text()
        read: set[str] = set()
        for module in (ROOT / "goproxy_site" / "settings").glob("*.py"):
            read |= set(ENV_READ.findall(module.read_text()))
        self.assertGreater(len(read), 50)
        missing = sorted(name for name in read if f"`{name}`" not in readme)
        self.assertEqual(missing, [], "document these in README.md's environment tables")

    def test_the_two_setup_commands_are_there(self) -> None:
        readme = (ROOT / "README.md").read_text()
        self.assertIn("make run", readme)
        self.assertIn("make test", readme)


API_EXAMPLE = re.compile(r"uses the `id` it returned:\n\n```sh\n(.*?)```", re.S)


class ReadmeApiExampleTests(LiveServerTestCase):
    """The README's API walk-through runs as written and uses the ids it is given."""

    databases = {"default", "plans"}

    def test_the_api_example_runs_against_a_live_server(self) -> None:
        match = API_EXAMPLE.search((ROOT / "README.md").read_text())
        assert match is not None, "the README's API example is missing"
        block = match.group(1)
        self.assertNotRegex(block, r'"user_id":\s*\d')
        operator = user_create(
            username="operator", email="operator@example.org", password="pw-op-123", is_staff=True
        )
        token, _ = api_token_issue(user=operator)
        script = block.replace(
            "$(.venv/bin/python manage.py create_api_token operator)", token
        ).replace("http://127.0.0.1:8000", self.live_server_url)
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        self.assertEqual(result.returncode, 0, result.stderr + result.stdout)
        dave = User.objects.get(username="dave")
        current = Subscription.objects.get(user_id=dave.pk, is_current=True)
        self.assertEqual(current.plan.name, "Pro")
        self.assertIn('"username":"dave"', result.stdout)  # the list found him
