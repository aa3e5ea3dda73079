"""Create (or with --reset, replace) a user's REST API token and print it.

manage.py create_api_token alice
manage.py create_api_token ops-bot --reset
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.selectors import user_get_by_username
from accounts.services import api_token_issue


class Command(BaseCommand):
    help = "Print the REST API token of a user, creating it when missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="Username of an active user.")
        parser.add_argument(
            "--reset", action="store_true", help="Replace the existing token with a new one."
        )

    def handle(self, *args: Any, username: str, reset: bool, **options: Any) -> None:
        user = user_get_by_username(username=username)
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        try:
            key, created = api_token_issue(user=user, reset=reset)
        except ValidationError as exc:
            raise CommandError(f"{username}: {' '.join(exc.messages)}") from exc
        self.stdout.write(key)
        verb = "Created" if created else "Existing"
        self.stderr.write(f"{verb} API token for {username}; send it as 'Authorization: Token …'.")
