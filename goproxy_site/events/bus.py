"""The event bus as the rest of the code sees it: messages, one error type, and the
producer and consumer interfaces.

The confluent-kafka adapters (`kafka.py`) and the in-memory bus (`memory.py`) both
implement `EventSink` and `EventSource`; code that sends or consumes takes these
Protocols, so either can be plugged in. Nothing here imports a broker library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .schemas import Event

Lag = dict[tuple[str, int], int]  # (topic, partition) -> messages not yet committed


class EventBusError(Exception):
    """The broker refused or could not be reached; `permanent` means retrying won't help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed (or produced) message, detached from librdkafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


DeliveryCallback = Callable[[Exception | None, RawMessage], None]


class EventSink(Protocol):
    """A producer: sends queue messages, `poll`/`flush` deliver them and run callbacks."""

    def send(
        self, event: Event, *, topic: str | None = None, on_delivery: DeliveryCallback | None = None
    ) -> None: ...

    def send_raw(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: dict[str, bytes] | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None: ...

    def poll(self, timeout: float = 0.0) -> int: ...

    def flush(self, timeout: float) -> int: ...

    def __len__(self) -> int: ...


class EventSource(Protocol):
    """A consumer with manual commits: redelivery starts at the last committed offset."""

    def consume(self, max_messages: int, timeout: float) -> list[RawMessage]: ...

    # Commit `offsets` ((topic, partition) -> next offset to read), or else everything
    # consumed so far.
    def commit(self, offsets: Mapping[tuple[str, int], int] | None = None) -> None: ...

    def lag(self, *, timeout: float = 2.0) -> Lag | None: ...

    def close(self) -> None: ...
