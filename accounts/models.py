"""Accounts DB models: the custom user and the proxy credentials issued to users."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

from goproxy_site.outbox import AbstractOutboxEvent

LOGIN_PATTERN = r"^[a-z0-9._-]{3,64}$"
login_validator = RegexValidator(
    LOGIN_PATTERN,
    "A proxy login is 3-64 characters: lowercase letters, digits, '.', '_' or '-'.",
)


class User(AbstractUser):
    """A person using the portal; staff users are operators."""

    email = models.EmailField("email address", unique=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="accounts_user_email_ci_unique",
                violation_error_message="A user with this e-mail address already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.username


class ProxyCredential(models.Model):
    """A login + generated secret for the proxy; the secret is kept only as a keyed hash."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="proxy_credentials")
    login = models.CharField(max_length=64, unique=True, validators=[login_validator])
    # Hex HMAC-SHA256 of the secret under settings.PROXY_CREDENTIAL_HASH_KEY.
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(login__regex=LOGIN_PATTERN),
                name="accounts_proxycredential_login_format",
            ),
        ]

    def __str__(self) -> str:
        return self.login

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class OutboxEvent(AbstractOutboxEvent):
    """An event committed with the accounts-DB change it announces, relayed to Kafka later."""
