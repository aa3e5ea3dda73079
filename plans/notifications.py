"""Notification services: quota and expiry reminders, e-mail, signed webhooks.

A Notification row is decided once per (subscription, kind, threshold, period) in the
plans-DB transaction that crossed the threshold (a unique constraint makes it once).
Sending happens after commit in Celery tasks: one e-mail task per notification and one
task per (notification, webhook endpoint), each retried with backoff on its own, so a
failing target never blocks anything else. The tasks (plans/tasks.py) call into this
module, so they are enqueued by name, never imported.

Webhook requests are POSTs of a JSON body with these headers:

    X-Goproxy-Event-Id: <uuid, the same on every retry>
    X-Goproxy-Timestamp: <unix seconds of this attempt>
    X-Goproxy-Signature: sha256=<hex HMAC-SHA256(endpoint secret, "<timestamp>." + body)>
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.selectors import user_get
from goproxy_site.db_routers import PLANS_DB
from goproxy_site.formatting import human_bytes, local_time

from .history import history_add
from .models import (
    DeliveryStatus,
    Notification,
    NotificationKind,
    Subscription,
    SubscriptionEventKind,
    SubscriptionStatus,
    WebhookDelivery,
    WebhookEndpoint,
    hours_in_words,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Goproxy-Signature"
TIMESTAMP_HEADER = "X-Goproxy-Timestamp"
EVENT_ID_HEADER = "X-Goproxy-Event-Id"

NOTIFICATION_DISPATCH_TASK = "plans.tasks.notification_dispatch_task"
WEBHOOK_DELIVER_TASK = "plans.tasks.webhook_deliver_task"


class WebhookDeliveryError(Exception):
    """One attempt failed and should be retried."""


def sign(*, secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def _enqueue_on_commit(task_name: str, object_id: int) -> None:
    """Send a Celery task by name once the plans-DB transaction commits."""

    def send() -> None:
        current_app.send_task(task_name, args=[object_id])

    transaction.on_commit(send, using=PLANS_DB)


def _create(sub: Subscription, kind: str, threshold: int, period_start: datetime) -> bool:
    """Record a notification once; schedule its sending after commit. False if known."""
    try:
        with transaction.atomic(using=PLANS_DB):
            note = Notification.objects.create(
                subscription=sub,
                user_id=sub.user_id,
                kind=kind,
                threshold=threshold,
                period_start=period_start,
            )
    except IntegrityError:
        return False
    history_add(
        sub,
        SubscriptionEventKind.NOTIFIED,
        timezone.now(),
        note.describe(),
        kind=kind,
        threshold=threshold,
        notification_id=note.pk,
    )
    _enqueue_on_commit(NOTIFICATION_DISPATCH_TASK, note.pk)
    return True


def quota_crossed(*, subscription: Subscription, used_before: int) -> list[int]:
    """Notify each quota percentage crossed between `used_before` and the current usage."""
    sub = subscription
    limit = sub.traffic_limit_bytes
    if not limit or sub.status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.LIMITED):
        return []
    used = sub.bytes_used
    period = sub.period_started_at or sub.started_at or sub.created_at
    sent = []
    for percent in sorted(settings.PLANS_NOTIFY_QUOTA_PERCENTS):
        mark = limit * percent / 100
        if used_before < mark <= used and _create(sub, NotificationKind.QUOTA, percent, period):
            sent.append(percent)
    return sent


def expiry_thresholds(term: timedelta) -> list[int]:
    """Hours before the end at which a subscription lasting `term` is reminded.

    A reminder falls in the second half of the term: the configured days that fit
    (PLANS_NOTIFY_EXPIRY_DAYS), or, for a term too short for any of them, the configured
    hours that fit (PLANS_NOTIFY_EXPIRY_HOURS). So a 30-day plan hears 3 days and 1 day
    before its end, a 1-day plan 2 hours before, and none at the minute it starts.
    """
    half = term / 2
    days = [d * 24 for d in settings.PLANS_NOTIFY_EXPIRY_DAYS if timedelta(days=d) <= half]
    if days:
        return sorted(days)
    return sorted(h for h in settings.PLANS_NOTIFY_EXPIRY_HOURS if timedelta(hours=h) <= half)


def expiry_due(*, now: datetime | None = None) -> list[tuple[int, int]]:
    """Remind users whose plan ends within one of its thresholds (expiry_thresholds):
    the nearest one only, once per expiry date, so an extension brings new reminders.

    Returns (user id, hours before the end) of each reminder decided."""
    now = now or timezone.now()
    longest = max(
        [d * 24 for d in settings.PLANS_NOTIFY_EXPIRY_DAYS]
        + list(settings.PLANS_NOTIFY_EXPIRY_HOURS),
        default=0,
    )
    if not longest:
        return []
    sent = []
    subs = Subscription.objects.filter(
        is_current=True,
        status__in=[SubscriptionStatus.ACTIVE, SubscriptionStatus.LIMITED],
        expires_at__gt=now,
        expires_at__lte=now + timedelta(hours=longest),
    )
    with transaction.atomic(using=PLANS_DB):
        for sub in subs:
            assert sub.expires_at is not None
            term = sub.expires_at - (sub.started_at or sub.created_at)
            left = sub.expires_at - now
            due = [h for h in expiry_thresholds(term) if left <= timedelta(hours=h)]
            if due and _create(sub, NotificationKind.EXPIRY, min(due), sub.expires_at):
                sent.append((sub.user_id, min(due)))
    return sent


def _text(note: Notification) -> tuple[str, str]:
    sub = note.subscription
    if note.kind == NotificationKind.QUOTA:
        subject = f"You have used {note.threshold}% of your {sub.plan.name} traffic"
        body = (
            f"Used {human_bytes(sub.bytes_used)} of {human_bytes(sub.traffic_limit_bytes)} "
            f"this period."
        )
        if note.threshold >= 100:
            body += (
                " Your connection is now slowed down until the period resets."
                if sub.plan.throttles
                else " The proxy refuses new traffic until the period resets or you top up."
            )
    else:
        subject = f"Your {sub.plan.name} plan ends in {hours_in_words(note.threshold)}"
        body = f"It expires on {local_time(sub.expires_at)}." if sub.expires_at else ""
    return subject, body


def payload(note: Notification) -> dict[str, object]:
    sub = note.subscription
    return {
        "type": f"subscription.{note.kind}",
        "notification_id": note.pk,
        "user_id": note.user_id,
        "subscription_id": sub.pk,
        "plan": sub.plan.name,
        "threshold": note.threshold,
        "threshold_unit": "percent" if note.kind == NotificationKind.QUOTA else "hours",
        "status": sub.status,
        "bytes_used": sub.bytes_used,
        "traffic_limit_bytes": sub.traffic_limit_bytes,
        "expires_at": sub.expires_at.isoformat() if sub.expires_at else None,
        "created_at": note.created_at.isoformat(),
    }


def notification_dispatch(*, notification_id: int) -> list[int]:
    """Queue one delivery per active webhook endpoint (each sent by its own task) and
    send the e-mail; returns the delivery ids."""
    note = Notification.objects.select_related("subscription__plan").get(pk=notification_id)
    body = json.dumps(payload(note), separators=(",", ":"))
    ids: list[int] = []
    with transaction.atomic(using=PLANS_DB):
        for endpoint in WebhookEndpoint.objects.filter(is_active=True):
            delivery, created = WebhookDelivery.objects.get_or_create(
                endpoint=endpoint,
                notification=note,
                defaults={"event_id": uuid.uuid4(), "payload": body},
            )
            if created:
                ids.append(delivery.pk)
                _enqueue_on_commit(WEBHOOK_DELIVER_TASK, delivery.pk)
    if settings.PLANS_NOTIFY_EMAIL and note.emailed_at is None:
        notification_email(notification=note)
    return ids


def notification_email(*, notification: Notification) -> bool:
    """E-mail the user (address from the accounts DB); failures are logged on the row."""
    note = notification
    user = user_get(user_id=note.user_id)
    if user is None or not user.email:
        note.email_error = "user has no e-mail address"
        note.save(update_fields=["email_error"])
        return False
    subject, body = _text(note)
    try:
        send_mail(subject, body, None, [user.email])
    except Exception as exc:  # SMTP and backend errors vary; the row records which
        logger.warning("notification %s e-mail failed: %s", note.pk, exc)
        note.email_error = str(exc)[:300]
        note.save(update_fields=["email_error"])
        return False
    note.emailed_at = timezone.now()
    note.email_error = ""
    note.save(update_fields=["emailed_at", "email_error"])
    return True


def webhook_deliver(*, delivery_id: int) -> bool:
    """One attempt; True when delivered. Raises WebhookDeliveryError to be retried, and
    marks the delivery failed (no raise) after PLANS_WEBHOOK_MAX_ATTEMPTS."""
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    if delivery.status != DeliveryStatus.PENDING:
        return delivery.status == DeliveryStatus.DELIVERED
    body = delivery.payload.encode()
    ts = int(time.time())
    url = delivery.endpoint.url
    if not url.lower().startswith(("http://", "https://")):
        # Only http(s): urllib would also open file: and ftp: URLs.
        delivery.status = DeliveryStatus.FAILED
        delivery.last_error = "only http:// and https:// webhook URLs are allowed"
        delivery.save()
        logger.warning("webhook %s: %s (%s)", delivery.event_id, delivery.last_error, url)
        return False
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "goproxy-webhooks/1",
            EVENT_ID_HEADER: str(delivery.event_id),
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(secret=delivery.endpoint.secret, timestamp=ts, body=body),
        },
    )
    error = ""
    code: int | None = None
    try:
        timeout = settings.PLANS_WEBHOOK_TIMEOUT
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            code = resp.status
    except urllib.error.HTTPError as exc:
        code, error = exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    delivery.attempts += 1
    delivery.response_status = code
    if not error and code is not None and 200 <= code < 300:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = timezone.now()
        delivery.last_error = ""
        delivery.save()
        return True
    delivery.last_error = error[:300] or f"HTTP {code}"
    if delivery.attempts >= settings.PLANS_WEBHOOK_MAX_ATTEMPTS:
        delivery.status = DeliveryStatus.FAILED
        delivery.save()
        logger.warning(
            "webhook %s to %s failed for good after %s attempts: %s",
            delivery.event_id,
            delivery.endpoint.url,
            delivery.attempts,
            delivery.last_error,
        )
        return False
    delivery.save()
    raise WebhookDeliveryError(f"{delivery.endpoint.url}: {delivery.last_error}")
