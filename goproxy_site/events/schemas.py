"""The Kafka event contract shared by the proxy, the plan-controller and Django.

Every event is a frozen dataclass named after the events of goproxy, the Go system this
project replaces (UserConsumedTrafficEvent, UserExceededTrafficLimitEvent, ...), plus
the ones this project adds. On the wire an event is one JSON object, the envelope:

    {"event_id": "<uuid4>", "type": "<class name>", "version": 1,
     "occurred_at": "<ISO 8601 UTC>", "payload": {...}}

The message key is the user id, so one user's events stay in order whatever the
partition count. This module imports no ORM code: the gevent proxy imports it cheaply.
"""

from __future__ import annotations

import dataclasses
import json
import typing
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
from django.conf import settings

SCHEMA_VERSION = 1

# Restriction reason codes carried by restriction events, and the text a refused
# client sees in the proxy's 403 body.
REASON_LIMIT = "limit"
REASON_NO_PLAN = "no_plan"
REASON_EXPIRED = "expired"
REASON_DISABLED = "disabled"
REASON_DEACTIVATED = "deactivated"
REASON_TEXT = {
    REASON_LIMIT: "traffic limit reached",
    REASON_NO_PLAN: "no active plan",
    REASON_EXPIRED: "plan expired",
    REASON_DISABLED: "plan disabled",
    REASON_DEACTIVATED: "account deactivated",
}


class EventError(ValueError):
    """A message that is not a valid event of this contract (malformed: dead-letter it)."""


class UnknownEventError(EventError):
    """A well-formed envelope of a type or version this code does not know (skip it)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> uuid.UUID:
    return uuid.uuid4()


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Envelope fields common to every event."""

    event_id: uuid.UUID = field(default_factory=_new_id)
    occurred_at: datetime = field(default_factory=_now)
    version: int = SCHEMA_VERSION

    # Topic family: "traffic" (proxy -> plan-controller) or "control" (-> every proxy).
    channel: ClassVar[str] = "control"

    @property
    def type(self) -> str:
        return type(self).__name__

    @property
    def key(self) -> str:
        """The Kafka message key: the user id, so a user's events keep their order."""
        return str(getattr(self, "user_id", ""))

    def payload(self) -> dict[str, Any]:
        skip = {"event_id", "occurred_at", "version"}
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": str(self.event_id),
            "type": self.type,
            "version": self.version,
            "occurred_at": self.occurred_at.isoformat(),
            "payload": self.payload(),
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


@dataclass(frozen=True, kw_only=True, slots=True)
class UserConsumedTrafficEvent(Event):
    """Bytes one user moved through one proxy instance since its previous report.

    `seq` grows by one per message of an instance; with `instance_id` it lets the
    plan-controller apply each delta exactly once.
    """

    channel: ClassVar[str] = "traffic"

    user_id: int
    bytes_up: int
    bytes_down: int
    instance_id: str
    seq: int


@dataclass(frozen=True, kw_only=True, slots=True)
class UserExceededTrafficLimitEvent(Event):
    """The user's usage reached the plan limit: every proxy refuses and cuts the user."""

    user_id: int
    reason: str = REASON_LIMIT
    restriction_version: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class UserConsumedTrafficWithoutPlan(Event):
    """The user has no usable plan (none, expired, disabled): every proxy refuses them."""

    user_id: int
    reason: str = REASON_NO_PLAN
    restriction_version: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class PlanAssignedEvent(Event):
    """A plan was assigned, renewed or reset: any restriction of the user is lifted."""

    user_id: int
    plan_id: int
    subscription_id: int
    restriction_version: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class UserThrottledEvent(Event):
    """The user reached a quota whose plan throttles: every proxy holds the user's open
    and new connections to `speed_bps` (each direction) and lifts any restriction.
    A later PlanAssignedEvent (reset, top-up, renewal) ends the throttle."""

    user_id: int
    speed_bps: int
    restriction_version: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class ProxyCredentialRevoked(Event):
    """A proxy credential stopped being valid: proxies drop it from their auth cache."""

    user_id: int
    login: str


@dataclass(frozen=True, kw_only=True, slots=True)
class UserDeactivated(Event):
    """A user was deactivated: proxies drop their credentials and cut their connections."""

    user_id: int


# -- quota grants ------------------------------------------------------------------------
# A proxy forwards a byte-limited user's bytes only under a grant: bytes of the user's
# remaining quota that the plan-controller set aside for that proxy instance. Requests and
# returns ride the traffic topic, keyed by the user like the deltas, so the controller
# sees an instance's deltas before its request; every byte the instance forwarded before
# a request or return is in a delta sent ahead of it. Answers ride the control topic and
# carry the instance they are for (also in the message header `instance`, so the others
# skip them undecoded).

GRANT_QUOTA = "quota"  # `granted_bytes` more to forward, within `valid_for_ms`
GRANT_UNLIMITED = "unlimited"  # no byte limit: forward freely, ask no more
GRANT_THROTTLE = "throttle"  # quota reached on a throttling plan: no byte limit, `speed_bps`
GRANT_REFUSED = "refused"  # nothing more: `reason` is the restriction reason
GRANT_MODES = frozenset({GRANT_QUOTA, GRANT_UNLIMITED, GRANT_THROTTLE, GRANT_REFUSED})


@dataclass(frozen=True, kw_only=True, slots=True)
class QuotaGrantRequest(Event):
    """A proxy instance asks for more of a user's quota.

    `request_id` grows per instance; the answer names it. `held_bytes` is what the instance
    still holds of earlier grants (unspent), `want_bytes` what it would like on top (sized
    from the user's recent rate).
    """

    channel: ClassVar[str] = "traffic"

    user_id: int
    instance_id: str
    request_id: int
    held_bytes: int
    want_bytes: int


@dataclass(frozen=True, kw_only=True, slots=True)
class QuotaGrantReturn(Event):
    """A proxy instance gives back the `returned_bytes` it held of a user's quota (the user
    went idle, the grant is no longer needed, or the instance stops); it holds nothing
    for the user afterwards. `request_id` is the last answer it had applied (0: none)."""

    channel: ClassVar[str] = "traffic"

    user_id: int
    instance_id: str
    request_id: int
    returned_bytes: int


@dataclass(frozen=True, kw_only=True, slots=True)
class QuotaGrant(Event):
    """The plan-controller's answer to one QuotaGrantRequest, for `instance_id` only.

    `mode` is one of GRANT_MODES. With GRANT_QUOTA the instance adds `granted_bytes` (maybe
    0: the rest of the quota is held elsewhere; ask again shortly) to what it holds and may
    spend what it holds for `valid_for_ms` from receipt. `plan_ends_in_ms` > 0: the
    subscription expires that long after the answer was made, and nothing may be forwarded
    after. Times are relative, so the hosts' clocks need not agree.
    """

    user_id: int
    instance_id: str
    request_id: int
    mode: str = GRANT_QUOTA
    granted_bytes: int = 0
    valid_for_ms: int = 0
    plan_ends_in_ms: int = 0
    reason: str = ""
    speed_bps: int = 0


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        UserConsumedTrafficEvent,
        UserExceededTrafficLimitEvent,
        UserConsumedTrafficWithoutPlan,
        PlanAssignedEvent,
        ProxyCredentialRevoked,
        UserDeactivated,
        UserThrottledEvent,
        QuotaGrantRequest,
        QuotaGrantReturn,
        QuotaGrant,
    )
}
# Known (type, version) pairs; a new version of a type is added here with its reader.
SUPPORTED_VERSIONS: dict[str, frozenset[int]] = {name: frozenset({1}) for name in EVENT_TYPES}
RESTRICTION_TYPES = (UserExceededTrafficLimitEvent, UserConsumedTrafficWithoutPlan)

_INT_FIELDS = frozenset(
    {"user_id", "bytes_up", "bytes_down", "seq", "plan_id", "subscription_id"}
    | {"restriction_version", "speed_bps", "request_id", "held_bytes", "want_bytes"}
    | {"returned_bytes", "granted_bytes", "valid_for_ms", "plan_ends_in_ms"}
)


def _check_payload(cls: type[Event], payload: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)} - {"event_id", "occurred_at", "version"}
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.name in names
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    }
    missing = required - payload.keys()
    if missing:
        raise EventError(f"{cls.__name__}: payload misses {sorted(missing)}")
    out: dict[str, Any] = {}
    for name in names & payload.keys():
        value = payload[name]
        if name in _INT_FIELDS:
            if type(value) is not int:
                raise EventError(f"{cls.__name__}.{name} must be an integer, not {value!r}")
        elif type(value) is not str:
            raise EventError(f"{cls.__name__}.{name} must be a string, not {value!r}")
        out[name] = value
    return out


def from_dict(data: Any) -> Event:
    """Build an event from a decoded envelope; raise EventError / UnknownEventError."""
    if not isinstance(data, dict):
        raise EventError("event envelope must be a JSON object")
    type_name = data.get("type")
    version = data.get("version")
    if not isinstance(type_name, str) or type(version) is not int:
        raise EventError("event envelope needs a string 'type' and an integer 'version'")
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise UnknownEventError(f"unknown event type {type_name!r}")
    if version not in SUPPORTED_VERSIONS[type_name]:
        raise UnknownEventError(f"unsupported version {version} of {type_name}")
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise EventError(f"{type_name}: 'payload' must be a JSON object")
    try:
        event_id = uuid.UUID(str(data["event_id"]))
        occurred_at = datetime.fromisoformat(str(data["occurred_at"]))
    except (KeyError, ValueError) as exc:
        raise EventError(f"{type_name}: bad or missing event_id/occurred_at ({exc})") from exc
    if occurred_at.tzinfo is None:
        raise EventError(f"{type_name}: occurred_at must carry a time zone")
    return cls(
        event_id=event_id,
        occurred_at=occurred_at,
        version=version,
        **_check_payload(cls, payload),
    )


class _Envelope(msgspec.Struct):
    event_id: str
    type: str
    version: int
    occurred_at: str
    payload: msgspec.Raw


def _payload_struct(cls: type[Event]) -> type[msgspec.Struct]:
    """A msgspec struct of `cls`'s payload fields, with the same types and defaults."""
    hints = typing.get_type_hints(cls)
    fields: list[tuple[str, type, Any] | tuple[str, type]] = []
    for f in dataclasses.fields(cls):
        if f.name in ("event_id", "occurred_at", "version"):
            continue
        if f.default is not dataclasses.MISSING:
            fields.append((f.name, hints[f.name], f.default))
        else:
            fields.append((f.name, hints[f.name]))
    fields.sort(key=len)  # required fields first, as a struct wants them
    return msgspec.defstruct(f"{cls.__name__}Payload", fields)


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_PAYLOADS = {name: msgspec.json.Decoder(_payload_struct(cls)) for name, cls in EVENT_TYPES.items()}


def _from_json_fast(raw: bytes | str) -> Event | None:
    """The usual case, decoded and type-checked by msgspec (several times faster than the
    generic path); None for anything unusual, which from_dict then explains."""
    try:
        envelope = _ENVELOPE.decode(raw)
        cls = EVENT_TYPES.get(envelope.type)
        if cls is None or envelope.version not in SUPPORTED_VERSIONS[envelope.type]:
            return None
        payload = _PAYLOADS[envelope.type].decode(envelope.payload)
        occurred_at = datetime.fromisoformat(envelope.occurred_at)
        event_id = uuid.UUID(envelope.event_id)
    except (msgspec.DecodeError, ValueError):
        return None
    if occurred_at.tzinfo is None:
        return None
    values = {name: getattr(payload, name) for name in payload.__struct_fields__}
    return cls(event_id=event_id, occurred_at=occurred_at, version=envelope.version, **values)


def from_json(raw: bytes | str | None) -> Event:
    """Decode one wire message; raise EventError (malformed) or UnknownEventError (skip)."""
    if raw is None:
        raise EventError("empty message")
    event = _from_json_fast(raw)
    if event is not None:
        return event
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(f"not JSON: {exc}") from exc
    return from_dict(data)


def topic_for(event: Event | type[Event]) -> str:
    """The topic an event is published on, from settings (KAFKA_TOPIC_*)."""
    if event.channel == "traffic":
        return settings.KAFKA_TOPIC_TRAFFIC
    return settings.KAFKA_TOPIC_CONTROL
