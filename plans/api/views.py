"""Plans API: the plan catalogue, operators' subscriptions, and the caller's own plan/usage.

Views parse input with a serializer, call one service or selector, and render.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from accounts.guards import require_verified_email
from accounts.requests import AuthenticatedRequest
from goproxy_site.api.exceptions import Conflict
from goproxy_site.api.permissions import IsOwner
from plans import selectors, services
from plans.history import BY_USER, operator_by
from plans.links import subscription_url
from plans.models import Plan, QueuedPlan, Subscription

from .permissions import IsStaffOrReadOnly
from .serializers import (
    ClaimFreeSerializer,
    MyQueueSerializer,
    PlanChoiceSerializer,
    PlanSerializer,
    QueueSerializer,
    SubscriptionAssignSerializer,
    SubscriptionExtendSerializer,
    SubscriptionFilterSerializer,
    SubscriptionHistorySerializer,
    SubscriptionSerializer,
    SubscriptionUrlSerializer,
    TopUpSerializer,
    UsageQuerySerializer,
    UsageSeriesSerializer,
)

ID_REGEX = r"[0-9]+"


def api_by(request: Request) -> str:
    """The operator behind an API call, as the subscription's history names them."""
    return operator_by(request.user.get_username(), via="the API")


def history_response(subscription: Subscription) -> Response:
    events, resets = selectors.subscription_history(subscription=subscription)
    body = {"subscription": subscription, "events": events, "resets": resets}
    return Response(SubscriptionHistorySerializer(body).data)


def _queued(
    result: QueuedPlan | Subscription, status_code: int = status.HTTP_202_ACCEPTED
) -> Response:
    """A queued plan (202 + its id) or, when it took over at once, the new subscription."""
    if isinstance(result, Subscription):
        return Response(SubscriptionSerializer(result).data, status=status.HTTP_201_CREATED)
    return Response(
        {"user_id": result.user_id, "queued_plan": result.plan_id},
        status=status_code,
    )


def usage_series(*, request: Request, user_id: int) -> Response:
    """The usage series for `me/usage/` and `users/{id}/usage/`.

    Without `from`, the window starts at the hour the current subscription started, so
    the default series sums to that subscription's totals; with no subscription it is
    the whole history. Only periods with traffic appear.
    """
    query = UsageQuerySerializer(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    start = query.validated_data.get("from")
    end = query.validated_data.get("to")
    granularity = query.validated_data["granularity"]
    if start is None:
        current = selectors.subscription_get_current(user_id=user_id)
        if current is not None and current.started_at is not None:
            start = current.started_at.replace(minute=0, second=0, microsecond=0)
            if end is not None and end <= start:
                raise ValidationError({"to": "`to` is before the current subscription began."})
    points = selectors.usage_for_user(
        user_id=user_id, start=start, end=end, granularity=granularity
    )
    up = sum(p["bytes_up"] for p in points)
    down = sum(p["bytes_down"] for p in points)
    body = {
        "user_id": user_id,
        "granularity": granularity,
        "from": start,
        "to": end,
        "points": [{**p, "bytes_total": p["bytes_up"] + p["bytes_down"]} for p in points],
        "total": {"bytes_up": up, "bytes_down": down, "bytes_total": up + down},
    }
    return Response(UsageSeriesSerializer(body).data)


def _features(validated: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]] | None]:
    data = dict(validated)
    features = data.pop("features", None)
    return data, [dict(item) for item in features] if features is not None else None


class PlanViewSet(viewsets.ModelViewSet):
    """Plans: anyone reads the public catalogue; staff see every plan and edit them."""

    serializer_class = PlanSerializer
    permission_classes = [IsStaffOrReadOnly]
    lookup_value_regex = ID_REGEX

    def get_queryset(self) -> QuerySet[Plan]:
        staff = bool(self.request.user and self.request.user.is_staff)
        return selectors.plan_list(public_only=not staff).order_by("price", "name", "pk")

    def perform_create(self, serializer: BaseSerializer[Plan]) -> None:
        data, features = _features(serializer.validated_data)
        serializer.instance = services.plan_create(data=data, features=features)

    def perform_update(self, serializer: BaseSerializer[Plan]) -> None:
        plan = serializer.instance
        assert plan is not None  # UpdateModelMixin passes the object it fetched
        data, features = _features(serializer.validated_data)
        serializer.instance = services.plan_update(plan=plan, data=data, features=features)

    def perform_destroy(self, instance: Plan) -> None:
        services.plan_delete(plan=instance)


class SubscriptionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Operators: list and filter subscriptions, assign plans, extend, reset, disable."""

    serializer_class = SubscriptionSerializer
    permission_classes = [IsAdminUser]
    lookup_value_regex = ID_REGEX

    def get_queryset(self) -> QuerySet[Subscription]:
        return selectors.subscription_list()

    @extend_schema(parameters=[SubscriptionFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        filters = SubscriptionFilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        queryset = selectors.subscription_list(
            user_id=data.get("user_id"),
            plan_id=data.get("plan"),
            status=data.get("status"),
            is_current=data.get("is_current"),
        )
        page = self.paginate_queryset(queryset)
        assert page is not None  # DEFAULT_PAGINATION_CLASS pages every list
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        request=SubscriptionAssignSerializer,
        responses={201: SubscriptionSerializer},
        description="Make a plan the user's current subscription (usage starts at zero).",
    )
    def create(self, request: Request) -> Response:
        payload = SubscriptionAssignSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        subscription = services.plan_assign(
            user_id=payload.validated_data["user_id"],
            plan=payload.validated_data["plan"],
            by=api_by(request),
        )
        return Response(SubscriptionSerializer(subscription).data, status=status.HTTP_201_CREATED)

    def _current(self) -> Subscription:
        subscription: Subscription = self.get_object()
        if not subscription.is_current:
            raise Conflict("Only a user's current subscription can be changed.", code="history")
        return subscription

    @extend_schema(request=SubscriptionExtendSerializer, responses=SubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def extend(self, request: Request, pk: str | None = None) -> Response:
        subscription = self._current()
        payload = SubscriptionExtendSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        subscription = services.subscription_extend(
            subscription=subscription, days=payload.validated_data["days"], by=api_by(request)
        )
        return Response(SubscriptionSerializer(subscription).data)

    @extend_schema(request=None, responses=SubscriptionSerializer)
    @action(detail=True, methods=["post"], url_path="reset-usage", url_name="reset-usage")
    def reset_usage(self, request: Request, pk: str | None = None) -> Response:
        subscription = services.subscription_reset_usage(
            subscription=self._current(), by=api_by(request)
        )
        return Response(SubscriptionSerializer(subscription).data)

    @extend_schema(request=None, responses=SubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str | None = None) -> Response:
        subscription = services.subscription_disable(
            subscription=self._current(), reason="disabled", by=api_by(request)
        )
        return Response(SubscriptionSerializer(subscription).data)

    @extend_schema(request=None, responses=SubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str | None = None) -> Response:
        subscription = services.subscription_enable(
            subscription=self._current(), by=api_by(request)
        )
        return Response(SubscriptionSerializer(subscription).data)

    @extend_schema(
        request=TopUpSerializer,
        responses=SubscriptionSerializer,
        description="Add bytes to this period's allowance (until the next reset).",
    )
    @action(detail=True, methods=["post"], url_path="top-up", url_name="top-up")
    def top_up(self, request: Request, pk: str | None = None) -> Response:
        subscription = self._current()
        payload = TopUpSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        subscription = services.subscription_top_up(
            subscription=subscription,
            bytes_=payload.validated_data["bytes"],
            by=api_by(request),
        )
        return Response(SubscriptionSerializer(subscription).data)

    @extend_schema(
        request=PlanChoiceSerializer,
        responses=SubscriptionSerializer,
        description="Move to another plan keeping usage and start date.",
    )
    @action(detail=True, methods=["post"])
    def switch(self, request: Request, pk: str | None = None) -> Response:
        subscription = self._current()
        payload = PlanChoiceSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        subscription = services.subscription_switch(
            subscription=subscription,
            plan=payload.validated_data["plan"],
            by=api_by(request),
        )
        return Response(SubscriptionSerializer(subscription).data)

    @extend_schema(responses=SubscriptionHistorySerializer)
    @action(detail=True, methods=["get"])
    def history(self, request: Request, pk: str | None = None) -> Response:
        return history_response(self.get_object())

    @extend_schema(
        request=QueueSerializer,
        responses={201: SubscriptionSerializer, 202: OpenApiResponse(description="Queued.")},
        description="Queue a user's next plan; it takes over when the current one expires "
        "or is exhausted (at once if it already has).",
    )
    @action(detail=False, methods=["post"])
    def queue(self, request: Request) -> Response:
        payload = QueueSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        result = services.plan_queue(
            user_id=payload.validated_data["user_id"],
            plan=payload.validated_data["plan"],
            by=api_by(request),
        )
        return _queued(result)


class MyLifecycleActions:
    """`me/...` actions for the caller's history, queued plan and subscription URL."""

    @extend_schema(responses=SubscriptionHistorySerializer)
    @action(detail=False, methods=["get"], url_path="subscription/history")
    def history(self, request: AuthenticatedRequest) -> Response:
        current = selectors.subscription_get_current(user_id=request.user.pk)
        if current is None:
            raise NotFound("You have no current subscription.")
        return history_response(current)

    @extend_schema(
        methods=["POST"],
        request=MyQueueSerializer,
        responses={201: SubscriptionSerializer, 202: OpenApiResponse(description="Queued.")},
        description="Queue a public plan without a price as your next plan.",
    )
    @extend_schema(
        methods=["DELETE"],
        request=None,
        responses={
            204: OpenApiResponse(description="Cancelled."),
            404: OpenApiResponse(description="No queued plan."),
        },
        description="Cancel your queued plan.",
    )
    @action(detail=False, methods=["post", "delete"], url_path="subscription/queue")
    def queue(self, request: AuthenticatedRequest) -> Response:
        if request.method == "DELETE":
            if not services.plan_queue_cancel(user_id=request.user.pk, by=BY_USER):
                raise NotFound("You have no queued plan.")
            return Response(status=status.HTTP_204_NO_CONTENT)
        payload = MyQueueSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        result = services.plan_queue(
            user_id=request.user.pk, plan=payload.validated_data["plan"], by=BY_USER
        )
        return _queued(result)

    @extend_schema(
        responses={
            200: SubscriptionUrlSerializer,
            404: OpenApiResponse(description="None yet: POST subscription-url/rotate/."),
        },
        description="Your private subscription URL. Your first plan creates it; without "
        "one, POST subscription-url/rotate/ creates it.",
    )
    @action(detail=False, methods=["get"], url_path="subscription-url")
    def subscription_url(self, request: AuthenticatedRequest) -> Response:
        token = selectors.subscription_token_of_user(user_id=request.user.pk)
        if token is None:
            raise NotFound(
                "You have no subscription URL yet; POST me/subscription-url/rotate/ creates one."
            )
        return Response({"url": subscription_url(token)})

    @extend_schema(
        request=None,
        responses=SubscriptionUrlSerializer,
        description="Replace your subscription URL (or create the first one).",
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="subscription-url/rotate",
        url_name="subscription-url-rotate",
    )
    def rotate_subscription_url(self, request: AuthenticatedRequest) -> Response:
        token = services.subscription_token_rotate(user_id=request.user.pk)
        return Response({"url": subscription_url(token)})


class MyPlanViewSet(MyLifecycleActions, viewsets.GenericViewSet):
    """The caller's own subscription, free-plan claim and usage (`me/...`)."""

    serializer_class = SubscriptionSerializer
    permission_classes = [IsAuthenticated, IsOwner]
    pagination_class = None
    request: AuthenticatedRequest

    @extend_schema(
        responses={
            200: SubscriptionSerializer,
            404: OpenApiResponse(description="No current subscription."),
        }
    )
    @action(detail=False, methods=["get"])
    def subscription(self, request: AuthenticatedRequest) -> Response:
        current = selectors.subscription_get_current(user_id=request.user.pk)
        if current is None:
            raise NotFound("You have no current subscription.")
        self.check_object_permissions(request, current)
        return Response(SubscriptionSerializer(current).data)

    @extend_schema(
        request=ClaimFreeSerializer,
        responses={201: SubscriptionSerializer},
        description="Claim a free plan: a verified e-mail address is needed (403 without), "
        "once per person (account and e-mail address, 409 for a second claim), and only "
        "without a running plan.",
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="subscription/claim-free",
        url_name="claim-free",
    )
    def claim_free(self, request: AuthenticatedRequest) -> Response:
        require_verified_email(user=request.user)
        payload = ClaimFreeSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        plan = payload.validated_data.get("plan") or selectors.plan_get_default_free()
        if plan is None:
            raise ValidationError({"plan": "No free plan is offered at the moment."})
        subscription = services.plan_claim_free(
            user_id=request.user.pk, email=request.user.email, plan=plan
        )
        return Response(SubscriptionSerializer(subscription).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[UsageQuerySerializer], responses=UsageSeriesSerializer)
    @action(detail=False, methods=["get"])
    def usage(self, request: AuthenticatedRequest) -> Response:
        return usage_series(request=request, user_id=request.user.pk)
