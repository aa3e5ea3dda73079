"""Serializers for users, the caller's profile and proxy credentials.

They validate only; views hand `validated_data` to a service. Duplicate values are
reported with code "unique", which the exception handler turns into 409.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts import selectors
from accounts.models import LOGIN_PATTERN, ProxyCredential, User
from accounts.services import LOGIN_RULE
from plans.api.serializers import MAX_BIGINT, SubscriptionSerializer
from plans.models import Subscription, SubscriptionStatus
from plans.selectors import subscription_get_current

USERNAME_TAKEN = "A user with that username already exists."
# Fields of a user that both operators (users/) and the user (me/) see.
PROFILE_FIELDS = ["id", "username", "email", "email_verified", "first_name", "last_name"]
EMAIL_TAKEN = "A user with this e-mail address already exists."


class _ProfileValidation(serializers.ModelSerializer):
    """E-mail uniqueness (case-insensitive) and verification shared by the staff and
    self-service serializers. A changed address is unverified until its link is opened
    (the portal's dashboard sends it)."""

    email_verified = serializers.SerializerMethodField(
        help_text="Whether the e-mail address is verified (needed to claim the free plan "
        "and issue credentials)."
    )

    def _exclude_pk(self) -> int | None:
        return self.instance.pk if self.instance is not None else None

    def get_email_verified(self, user: User) -> bool:
        # List views pass the page's verified user ids (one query).
        verified: set[int] | None = self.context.get("email_verified")
        if verified is not None:
            return user.pk in verified
        return selectors.user_email_verified(user_id=user.pk)

    def validate_email(self, value: str) -> str:
        if selectors.user_email_taken(email=value, exclude_pk=self._exclude_pk()):
            raise serializers.ValidationError(EMAIL_TAKEN, code="unique")
        return value


class UserSerializer(_ProfileValidation):
    """A user as operators see and edit it; `subscription` is the current one, if any."""

    password = serializers.CharField(
        write_only=True,
        required=False,
        trim_whitespace=False,
        max_length=128,
        style={"input_type": "password"},
        help_text="Portal login password; checked against the password rules. "
        "Omit it for users who only use the proxy.",
    )
    subscription = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = [
            *PROFILE_FIELDS,
            "is_active",
            "is_staff",
            "date_joined",
            "last_login",
            "password",
            "subscription",
        ]
        read_only_fields = ["id", "is_active", "is_staff", "date_joined", "last_login"]
        extra_kwargs = {"email": {"required": True, "allow_blank": False}}

    def validate_username(self, value: str) -> str:
        if selectors.user_username_taken(username=value, exclude_pk=self._exclude_pk()):
            raise serializers.ValidationError(USERNAME_TAKEN, code="unique")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        password = attrs.get("password")
        if password:
            candidate = User(
                username=attrs.get("username", getattr(self.instance, "username", "")),
                email=attrs.get("email", getattr(self.instance, "email", "")),
                first_name=attrs.get("first_name", getattr(self.instance, "first_name", "")),
                last_name=attrs.get("last_name", getattr(self.instance, "last_name", "")),
            )
            try:
                password_validation.validate_password(password, user=candidate)
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"password": list(exc.messages)}) from exc
        return attrs

    @extend_schema_field(SubscriptionSerializer(allow_null=True))
    def get_subscription(self, user: User) -> dict[str, Any] | None:
        # List views pass the page's subscriptions in one plans-DB query (no N+1).
        by_user: dict[int, Subscription] | None = self.context.get("subscriptions")
        if by_user is not None:
            subscription = by_user.get(user.pk)
        else:
            subscription = subscription_get_current(user_id=user.pk)
        return SubscriptionSerializer(subscription).data if subscription else None


class UserFilterSerializer(serializers.Serializer):
    """Query parameters of the user list."""

    search = serializers.CharField(
        required=False, max_length=254, help_text="Part of a username or e-mail address."
    )
    is_active = serializers.BooleanField(required=False, allow_null=True, default=None)
    plan = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_BIGINT,
        help_text="Id of the plan of the current subscription.",
    )
    status = serializers.ChoiceField(
        choices=[*SubscriptionStatus.values, "none"],
        required=False,
        help_text='Status of the current subscription; "none" = no current subscription.',
    )


class MeSerializer(_ProfileValidation):
    """The caller's own profile: name and e-mail are editable, the rest is not."""

    class Meta:
        model = User
        fields = [*PROFILE_FIELDS, "is_staff", "date_joined"]
        read_only_fields = ["id", "username", "is_staff", "date_joined"]
        extra_kwargs = {"email": {"allow_blank": False}}


class CredentialSerializer(serializers.ModelSerializer):
    """A proxy credential without its secret (the secret is never stored in clear)."""

    is_revoked = serializers.BooleanField(read_only=True)

    class Meta:
        model = ProxyCredential
        fields = ["id", "login", "created_at", "last_used_at", "revoked_at", "is_revoked"]
        read_only_fields = fields


class CredentialIssueSerializer(serializers.Serializer):
    login = serializers.CharField(
        required=False,
        max_length=64,
        validators=[RegexValidator(LOGIN_PATTERN, LOGIN_RULE)],
        help_text="Proxy login; generated from the username when omitted.",
    )

    def validate_login(self, value: str) -> str:
        if selectors.credential_login_taken(login=value):
            raise serializers.ValidationError("This proxy login is already taken.", code="unique")
        return value


class IssuedCredentialSerializer(CredentialSerializer):
    """A credential with its secret: returned once, by issue and rotate, never again."""

    secret = serializers.CharField(read_only=True)

    class Meta(CredentialSerializer.Meta):
        fields = [*CredentialSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class CredentialFilterSerializer(serializers.Serializer):
    active = serializers.BooleanField(
        required=False, default=False, help_text="true = only credentials not revoked."
    )
