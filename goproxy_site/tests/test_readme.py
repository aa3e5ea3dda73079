"""The README documents every environment variable the settings read."""

from __future__ import annotations

import re
from pathlib import Path

from django.test import SimpleTestCase

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
