"""Accounts API: operators manage users; every user manages their profile and credentials.

Views parse input with a serializer, call one service or selector, and render.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from accounts import selectors, services
from accounts.guards import require_verified_email
from accounts.models import ProxyCredential, User
from accounts.requests import AuthenticatedRequest
from accounts.services import IssuedCredential
from goproxy_site.api.permissions import IsOwner
from plans import selectors as plan_selectors
from plans.api.serializers import UsageQuerySerializer, UsageSeriesSerializer
from plans.api.views import ID_REGEX, usage_series

from .permissions import IsNotSelf
from .serializers import (
    CredentialFilterSerializer,
    CredentialIssueSerializer,
    CredentialSerializer,
    IssuedCredentialSerializer,
    MeSerializer,
    UserFilterSerializer,
    UserSerializer,
)


class UserViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Operators' user management. DELETE deactivates: credentials revoked, plan disabled."""

    serializer_class = UserSerializer
    permission_classes = [IsAdminUser, IsNotSelf]
    lookup_value_regex = ID_REGEX

    def get_queryset(self) -> QuerySet[User]:
        return selectors.user_list()

    @extend_schema(parameters=[UserFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        filters = UserFilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        queryset = selectors.user_list(
            search=data.get("search", ""),
            is_active=data.get("is_active"),
            plan_id=data.get("plan"),
            status=data.get("status"),
        )
        page = self.paginate_queryset(queryset)
        assert page is not None  # DEFAULT_PAGINATION_CLASS pages every list
        user_ids = [u.pk for u in page]
        serializer = UserSerializer(
            page,
            many=True,
            context={
                **self.get_serializer_context(),
                "subscriptions": plan_selectors.subscriptions_current_by_user(user_ids=user_ids),
                "email_verified": selectors.user_ids_email_verified(user_ids=user_ids),
            },
        )
        return self.get_paginated_response(serializer.data)

    def perform_create(self, serializer: BaseSerializer[User]) -> None:
        serializer.instance = services.user_create(**serializer.validated_data)

    def perform_update(self, serializer: BaseSerializer[User]) -> None:
        user = serializer.instance
        assert user is not None  # UpdateModelMixin passes the object it fetched
        serializer.instance = services.user_update(user=user, data=dict(serializer.validated_data))

    @extend_schema(description="Deactivate the user: no login, credentials revoked, plan disabled.")
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance: User) -> None:
        if instance.is_active:
            services.user_deactivate(user=instance)

    @extend_schema(parameters=[UsageQuerySerializer], responses=UsageSeriesSerializer)
    @action(detail=True, methods=["get"])
    def usage(self, request: Request, pk: str | None = None) -> Response:
        user: User = self.get_object()
        return usage_series(request=request, user_id=user.pk)


class MeViewSet(viewsets.GenericViewSet):
    """The caller's own profile (`me/`)."""

    serializer_class = MeSerializer
    permission_classes = [IsAuthenticated]
    request: AuthenticatedRequest

    def get_object(self) -> User:
        return self.request.user

    def retrieve(self, request: AuthenticatedRequest) -> Response:
        return Response(MeSerializer(self.get_object()).data)

    def update(self, request: AuthenticatedRequest, partial: bool = False) -> Response:
        user = self.get_object()
        serializer = MeSerializer(user, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        user = services.user_update(user=user, data=dict(serializer.validated_data))
        return Response(MeSerializer(user).data)

    def partial_update(self, request: AuthenticatedRequest) -> Response:
        return self.update(request, partial=True)


def _issued(issued: IssuedCredential) -> dict[str, Any]:
    return {**CredentialSerializer(issued.credential).data, "secret": issued.secret}


class MyCredentialViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The caller's proxy credentials. Secrets appear only in issue and rotate responses."""

    serializer_class = CredentialSerializer
    permission_classes = [IsAuthenticated, IsOwner]
    lookup_value_regex = ID_REGEX
    request: AuthenticatedRequest

    def get_queryset(self) -> QuerySet[ProxyCredential]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return ProxyCredential.objects.none()
        active_only = False
        if self.action == "list":
            filters = CredentialFilterSerializer(data=self.request.query_params.dict())
            filters.is_valid(raise_exception=True)
            active_only = filters.validated_data["active"]
        return selectors.credential_list(user=self.request.user, include_revoked=not active_only)

    @extend_schema(parameters=[CredentialFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=CredentialIssueSerializer,
        responses={201: IssuedCredentialSerializer},
        description="Issue a credential; the caller's e-mail address must be verified (403).",
    )
    def create(self, request: AuthenticatedRequest) -> Response:
        require_verified_email(user=request.user)
        payload = CredentialIssueSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        issued = services.credential_issue_within_limit(
            user=request.user, login=payload.validated_data.get("login")
        )
        return Response(_issued(issued), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=IssuedCredentialSerializer)
    @action(detail=True, methods=["post"])
    def rotate(self, request: AuthenticatedRequest, pk: str | None = None) -> Response:
        issued = services.credential_rotate(credential=self.get_object())
        return Response(_issued(issued))

    @extend_schema(description="Revoke the credential (it stays listed, with `revoked_at`).")
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance: ProxyCredential) -> None:
        services.credential_revoke(credential=instance)


me_view = MeViewSet.as_view(
    {"get": "retrieve", "put": "update", "patch": "partial_update"}, name="Me"
)
