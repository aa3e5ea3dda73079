"""The set-based statements a traffic batch is made of, for PostgreSQL and SQLite.

Each function is one statement however many rows it carries (SQLite: one per chunk of
SQLITE_ROWS rows, since it binds at most ~32k parameters). PostgreSQL gets arrays through
`unnest`, so a statement's text and plan are the same for 10 rows or 20,000 and psycopg
prepares it once. Increments are written as `column = column + excluded.column` (or
`+ v.column`): no value read earlier is written back, so a row another transaction
changed meanwhile keeps its change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connections

from goproxy_site.db_routers import PLANS_DB
from plans.models import (
    Plan,
    Subscription,
    TrafficSequence,
    UnplannedUsage,
    UsageBucket,
    UsageReset,
    UserRestriction,
)

SQLITE_ROWS = 4000

Row = tuple[Any, ...]


def _pg() -> bool:
    return connections[PLANS_DB].vendor == "postgresql"


def _chunks(rows: Sequence[Row]) -> Iterator[Sequence[Row]]:
    for start in range(0, len(rows), SQLITE_ROWS):
        yield rows[start : start + SQLITE_ROWS]


def _columns(rows: Sequence[Row]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


def _values(rows: Sequence[Row]) -> tuple[str, list[Any]]:
    """`VALUES (%s, …), …` for SQLite, with the flat parameter list."""
    width = len(rows[0])
    one = "(" + ", ".join(["%s"] * width) + ")"
    return ", ".join([one] * len(rows)), [value for row in rows for value in row]


def _execute(sql: str, params: Sequence[Any]) -> list[Row]:
    connection = connections[PLANS_DB]
    if connection.vendor == "sqlite":
        # Stored as Django stores them (naive UTC text), read back aware, as the ORM does.
        adapt = connection.ops.adapt_datetimefield_value
        params = [adapt(p) if isinstance(p, datetime) else p for p in params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if not cursor.description:
            return []
        rows = list(cursor.fetchall())
    if connection.vendor == "sqlite":
        rows = [tuple(_aware(v) for v in row) for row in rows]
    return rows


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def marks_advance(pairs: dict[tuple[str, int], int], now: datetime) -> dict[tuple[str, int], int]:
    """Lock the sequence marks of `pairs` ((instance, user) -> highest seq in the batch),
    raise each to that seq, and return the marks as they were before (absent: never seen).

    PostgreSQL does it in one statement (the CTE reads and locks the old rows, the upsert
    raises them, both in one snapshot); rows are taken in (user, instance) order, the
    order every batch locks in, so two workers never deadlock on them.
    """
    if not pairs:
        return {}
    table = TrafficSequence._meta.db_table
    ordered = sorted(pairs.items(), key=lambda item: (item[0][1], item[0][0]))
    instances = [i for (i, _u), _s in ordered]
    users = [u for (_i, u), _s in ordered]
    seqs = [s for _pair, s in ordered]
    if _pg():
        rows = _execute(
            f"""WITH old AS (
                  SELECT m.instance_id, m.user_id, m.last_seq FROM {table} m
                  JOIN unnest(%s::text[], %s::bigint[]) AS p(i, u)
                    ON m.instance_id = p.i AND m.user_id = p.u
                  ORDER BY m.user_id, m.instance_id FOR UPDATE OF m
                ), up AS (
                  INSERT INTO {table} (instance_id, user_id, last_seq, updated_at)
                  SELECT i, u, s, %s FROM unnest(%s::text[], %s::bigint[], %s::bigint[])
                    AS p(i, u, s)
                  ON CONFLICT (instance_id, user_id) DO UPDATE
                    SET last_seq = GREATEST({table}.last_seq, excluded.last_seq),
                        updated_at = excluded.updated_at
                )
                SELECT instance_id, user_id, last_seq FROM old""",
            [instances, users, now, instances, users, seqs],
        )
        return {(i, u): s for i, u, s in rows}
    old: dict[tuple[str, int], int] = {}
    rows_in = list(zip(instances, users, seqs, strict=True))
    for chunk in _chunks(rows_in):
        values, params = _values([(i, u) for i, u, _s in chunk])
        for i, u, s in _execute(
            f"""WITH p(i, u) AS (VALUES {values})
                SELECT m.instance_id, m.user_id, m.last_seq FROM {table} m
                JOIN p ON m.instance_id = p.i AND m.user_id = p.u""",
            params,
        ):
            old[(i, u)] = s
        values, params = _values([(i, u, s, now) for i, u, s in chunk])
        _execute(
            f"""INSERT INTO {table} (instance_id, user_id, last_seq, updated_at)
                VALUES {values}
                ON CONFLICT (instance_id, user_id) DO UPDATE
                  SET last_seq = MAX({table}.last_seq, excluded.last_seq),
                      updated_at = excluded.updated_at""",
            params,
        )
    return old


SUBSCRIPTION_COLUMNS = (
    "id",
    "user_id",
    "plan_id",
    "status",
    "is_current",
    "current_from",
    "current_until",
    "bytes_up",
    "bytes_down",
    "traffic_limit_bytes",
    "period_started_at",
    "next_reset_at",
    "expires_at",
)


def _select_in(sql: str, ids: Sequence[int], params: Sequence[Any] = ()) -> list[Row]:
    """Run `sql`, whose `{ids}` is a condition on a bigint column, for all `ids`: one
    `= ANY(array)` on PostgreSQL, chunks of `IN (…)` on SQLite; `params` follow the ids."""
    if not ids:
        return []
    if _pg():
        return _execute(sql.format(ids="= ANY(%s::bigint[])"), [list(ids), *params])
    rows: list[Row] = []
    for start in range(0, len(ids), SQLITE_ROWS):
        chunk = list(ids[start : start + SQLITE_ROWS])
        marks = "IN (" + ", ".join(["%s"] * len(chunk)) + ")"
        rows += _execute(sql.format(ids=marks), [*chunk, *params])
    return rows


def subscriptions_lock(user_ids: Sequence[int], since: datetime) -> list[Row]:
    """Every subscription of `user_ids` current now or at any moment after `since`,
    locked in user order (one statement), as tuples of SUBSCRIPTION_COLUMNS."""
    table = Subscription._meta.db_table
    columns = ", ".join(f"s.{c}" for c in SUBSCRIPTION_COLUMNS)
    lock = " FOR NO KEY UPDATE OF s" if _pg() else ""
    return _select_in(
        f"""SELECT {columns} FROM {table} s
            WHERE s.user_id {{ids}} AND (s.is_current OR s.current_until > %s)
            ORDER BY s.user_id, s.id{lock}""",
        sorted(user_ids),
        [since],
    )


def subscriptions_add(rows: Sequence[Row], now: datetime) -> None:
    """Add (id, bytes_up, bytes_down, lifetime_up, lifetime_down) to subscriptions."""
    if not rows:
        return
    table = Subscription._meta.db_table
    assignments = f"""bytes_up = {table}.bytes_up + v.up, bytes_down = {table}.bytes_down + v.down,
        lifetime_bytes_up = {table}.lifetime_bytes_up + v.lup,
        lifetime_bytes_down = {table}.lifetime_bytes_down + v.ldown, updated_at = %s"""
    if _pg():
        _execute(
            f"""UPDATE {table} SET {assignments}
                FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
                            %s::bigint[]) AS v(id, up, down, lup, ldown)
                WHERE {table}.id = v.id""",
            [now, *_columns(rows)],
        )
        return
    for chunk in _chunks(rows):
        values, params = _values(chunk)
        _execute(
            f"""WITH v(id, up, down, lup, ldown) AS (VALUES {values})
                UPDATE {table} SET {assignments} FROM v WHERE {table}.id = v.id""",
            [*params, now],
        )


def resets_add(rows: Sequence[Row]) -> None:
    """Add (reset record id, bytes_up, bytes_down) to closed periods' records."""
    if not rows:
        return
    table = UsageReset._meta.db_table
    assignments = f"bytes_up = {table}.bytes_up + v.up, bytes_down = {table}.bytes_down + v.down"
    if _pg():
        _execute(
            f"""UPDATE {table} SET {assignments}
                FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS v(id, up, down)
                WHERE {table}.id = v.id""",
            _columns(rows),
        )
        return
    for chunk in _chunks(rows):
        values, params = _values(chunk)
        _execute(
            f"""WITH v(id, up, down) AS (VALUES {values})
                UPDATE {table} SET {assignments} FROM v WHERE {table}.id = v.id""",
            params,
        )


def resets_of(subscription_ids: Sequence[int], since: datetime) -> list[Row]:
    """(id, subscription_id, period_start, period_end) of the closed periods of these
    subscriptions that ended after `since`."""
    table = UsageReset._meta.db_table
    return _select_in(
        f"""SELECT id, subscription_id, period_start, period_end FROM {table}
            WHERE subscription_id {{ids}} AND period_end > %s""",
        sorted(subscription_ids),
        [since],
    )


def _hourly_upsert(table: str, key: str, columns: str, rows: Sequence[Row], types: str) -> None:
    update = f"bytes_up = {table}.bytes_up + excluded.bytes_up, " + (
        f"bytes_down = {table}.bytes_down + excluded.bytes_down"
    )
    if _pg():
        _execute(
            f"""INSERT INTO {table} ({columns}, bytes_up, bytes_down)
                SELECT * FROM unnest({types})
                ON CONFLICT ({key}) DO UPDATE SET {update}""",
            _columns(rows),
        )
        return
    for chunk in _chunks(rows):
        values, params = _values(chunk)
        _execute(
            f"""INSERT INTO {table} ({columns}, bytes_up, bytes_down) VALUES {values}
                ON CONFLICT ({key}) DO UPDATE SET {update}""",
            params,
        )


def buckets_add(rows: Sequence[Row]) -> None:
    """Add (user_id, subscription_id, hour, bytes_up, bytes_down) to hourly buckets."""
    if rows:
        _hourly_upsert(
            UsageBucket._meta.db_table,
            "subscription_id, hour",
            "user_id, subscription_id, hour",
            rows,
            "%s::bigint[], %s::bigint[], %s::timestamptz[], %s::bigint[], %s::bigint[]",
        )


def unplanned_add(rows: Sequence[Row]) -> None:
    """Add (user_id, hour, bytes_up, bytes_down) to the hourly bytes of users without a
    plan at the time."""
    if rows:
        _hourly_upsert(
            UnplannedUsage._meta.db_table,
            "user_id, hour",
            "user_id, hour",
            rows,
            "%s::bigint[], %s::timestamptz[], %s::bigint[], %s::bigint[]",
        )


def restrictions_of(user_ids: Sequence[int]) -> dict[int, tuple[str, int | None]]:
    """user_id -> (reason, throttle_bps) of the users that have a restriction row."""
    table = UserRestriction._meta.db_table
    rows = _select_in(
        f"SELECT user_id, reason, throttle_bps FROM {table} WHERE user_id {{ids}}",
        sorted(user_ids),
    )
    return {user_id: (reason, throttle) for user_id, reason, throttle in rows}


def plans_of(plan_ids: Sequence[int]) -> dict[int, tuple[str, int | None]]:
    """plan_id -> (quota_action, throttle_speed_bps)."""
    table = Plan._meta.db_table
    rows = _select_in(
        f"SELECT id, quota_action, throttle_speed_bps FROM {table} WHERE id {{ids}}",
        sorted(plan_ids),
    )
    return {plan_id: (action, speed) for plan_id, action, speed in rows}
