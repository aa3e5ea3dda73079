"""The set-based statements a traffic batch is made of, for PostgreSQL and SQLite.

Each function is one statement however many rows it carries (SQLite: one per chunk of
SQLITE_ROWS rows, since it binds at most ~32k parameters). PostgreSQL gets each column
as one array literal through `unnest`, so a statement's text and plan are the same for
10 rows or 20,000, and no value is converted one by one on either side. Increments are
written as `column = column + excluded.column` (or `+ v.column`): no value read earlier
is written back, so a row another transaction changed meanwhile keeps its change.

Moments cross this module as integer microseconds since the Unix epoch (UTC), which
compare exactly and cost nothing to parse.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections

from goproxy_site.db_routers import PLANS_DB
from plans.models import (
    Plan,
    QuotaGrantLedger,
    Subscription,
    TrafficSequence,
    UnplannedUsage,
    UsageBucket,
    UsageReset,
    UserRestriction,
)

SQLITE_ROWS = 4000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
HOUR_US = 3_600_000_000

Row = tuple[Any, ...]


def us(moment: datetime) -> int:
    """Integer microseconds since the epoch of an aware datetime."""
    return (moment - EPOCH) // MICROSECOND


def moment(microseconds: int) -> datetime:
    return EPOCH + timedelta(microseconds=microseconds)


def _pg() -> bool:
    return connections[PLANS_DB].vendor == "postgresql"


def _array(values: Sequence[int]) -> str:
    """A PostgreSQL array literal of integers (cast in the SQL)."""
    return "{" + ",".join(map(str, values)) + "}"


def _chunks(rows: Sequence[Row]) -> Iterator[Sequence[Row]]:
    for start in range(0, len(rows), SQLITE_ROWS):
        yield rows[start : start + SQLITE_ROWS]


def _values(rows: Sequence[Row]) -> tuple[str, list[Any]]:
    """`VALUES (%s, …), …` for SQLite, with the flat parameter list."""
    width = len(rows[0])
    one = "(" + ", ".join(["%s"] * width) + ")"
    return ", ".join([one] * len(rows)), [value for row in rows for value in row]


def _execute(sql: str, params: Sequence[Any]) -> list[Row]:
    connection = connections[PLANS_DB]
    if connection.vendor == "sqlite":
        # Stored as Django stores them (naive UTC text).
        adapt = connection.ops.adapt_datetimefield_value
        params = [adapt(p) if isinstance(p, datetime) else p for p in params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if not cursor.description:
            return []
        return list(cursor.fetchall())


def _sqlite_us(value: datetime | None) -> int | None:
    """A moment read back from SQLite (naive UTC) as microseconds."""
    if value is None:
        return None
    return us(value.replace(tzinfo=UTC) if value.tzinfo is None else value)


def _select_in(sql: str, ids: Sequence[int], params: Sequence[Any] = ()) -> list[Row]:
    """Run `sql`, whose `{ids}` is a condition on a bigint column, for all `ids`: one
    `= ANY(array)` on PostgreSQL, chunks of `IN (…)` on SQLite; `params` follow the ids."""
    if not ids:
        return []
    if _pg():
        return _execute(sql.format(ids="= ANY(%s::bigint[])"), [_array(ids), *params])
    rows: list[Row] = []
    for start in range(0, len(ids), SQLITE_ROWS):
        chunk = list(ids[start : start + SQLITE_ROWS])
        marks = "IN (" + ", ".join(["%s"] * len(chunk)) + ")"
        rows += _execute(sql.format(ids=marks), [*chunk, *params])
    return rows


def marks_advance(pairs: dict[tuple[str, int], int], now: datetime) -> dict[tuple[str, int], int]:
    """Raise the sequence marks of `pairs` ((instance, user) -> highest seq in the batch)
    and return each mark as it was before (0: never seen), in one atomic upsert.

    The upsert waits for a row another transaction holds (a second worker applying the
    same deltas) and then reads its committed mark, so two batches never both see a delta
    as new. Rows are taken in (user, instance) order, the order every batch locks in, so
    two workers never deadlock on them.
    """
    if not pairs:
        return {}
    table = TrafficSequence._meta.db_table
    ordered = sorted(pairs.items(), key=lambda item: (item[0][1], item[0][0]))
    upsert = f"""ON CONFLICT (instance_id, user_id) DO UPDATE
        SET previous_seq = {table}.last_seq,
            last_seq = GREATEST({table}.last_seq, excluded.last_seq),
            updated_at = excluded.updated_at
        RETURNING instance_id, user_id, previous_seq"""
    if _pg():
        # Few instances, many users: the instance ids go once, each row names its index.
        names = sorted({i for (i, _u), _s in ordered})
        index = {name: n for n, name in enumerate(names, 1)}
        rows = _execute(
            f"""INSERT INTO {table} (instance_id, user_id, last_seq, previous_seq, updated_at)
                SELECT (%s::text[])[x], u, s, 0, %s
                FROM unnest(%s::int[], %s::bigint[], %s::bigint[]) AS v(x, u, s)
                ORDER BY u, x
                {upsert}""",
            [
                names,
                now,
                _array([index[i] for (i, _u), _s in ordered]),
                _array([u for (_i, u), _s in ordered]),
                _array([s for _pair, s in ordered]),
            ],
        )
    else:
        rows = []
        for chunk in _chunks([(i, u, s, 0, now) for (i, u), s in ordered]):
            values, params = _values(chunk)
            rows += _execute(
                f"""INSERT INTO {table} (instance_id, user_id, last_seq, previous_seq,
                      updated_at) VALUES {values} {upsert.replace("GREATEST", "MAX")}""",
                params,
            )
    return {(i, u): previous for i, u, previous in rows}


SUBSCRIPTION_COLUMNS = (
    "id",
    "user_id",
    "plan_id",
    "status",
    "is_current",
    "bytes_up",
    "bytes_down",
    "traffic_limit_bytes",
)
SUBSCRIPTION_MOMENTS = (
    "current_from",
    "current_until",
    "period_started_at",
    "next_reset_at",
    "expires_at",
)


def subscriptions_lock(user_ids: Sequence[int], since: datetime) -> list[Row]:
    """Every subscription of `user_ids` current now or at any moment after `since`,
    locked in user order (one statement): SUBSCRIPTION_COLUMNS, then the
    SUBSCRIPTION_MOMENTS as microseconds (None where empty)."""
    table = Subscription._meta.db_table
    columns = ", ".join(f"s.{c}" for c in SUBSCRIPTION_COLUMNS)
    if _pg():
        moments = ", ".join(
            f"(EXTRACT(EPOCH FROM s.{c}) * 1000000)::bigint" for c in SUBSCRIPTION_MOMENTS
        )
    else:
        moments = ", ".join(f"s.{c}" for c in SUBSCRIPTION_MOMENTS)
    lock = " FOR NO KEY UPDATE OF s" if _pg() else ""
    rows = _select_in(
        f"""SELECT {columns}, {moments} FROM {table} s
            WHERE s.user_id {{ids}} AND (s.is_current OR s.current_until > %s)
            ORDER BY s.user_id, s.id{lock}""",
        sorted(user_ids),
        [since],
    )
    if _pg():
        return rows
    width = len(SUBSCRIPTION_COLUMNS)
    return [(*row[:width], *(_sqlite_us(v) for v in row[width:])) for row in rows]


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
            [now, *(_array(column) for column in zip(*rows, strict=True))],
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
            [_array(column) for column in zip(*rows, strict=True)],
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
    subscriptions that ended after `since`, moments in microseconds."""
    table = UsageReset._meta.db_table
    if _pg():
        moments = (
            "(EXTRACT(EPOCH FROM period_start) * 1000000)::bigint, "
            "(EXTRACT(EPOCH FROM period_end) * 1000000)::bigint"
        )
    else:
        moments = "period_start, period_end"
    rows = _select_in(
        f"""SELECT id, subscription_id, {moments} FROM {table}
            WHERE subscription_id {{ids}} AND period_end > %s""",
        sorted(subscription_ids),
        [since],
    )
    if _pg():
        return rows
    return [(rid, sub, _sqlite_us(start), _sqlite_us(end)) for rid, sub, start, end in rows]


def _hourly_upsert(table: str, key: str, columns: tuple[str, ...], rows: Sequence[Row]) -> None:
    """Rows end with (hour in microseconds, bytes_up, bytes_down); the other columns are
    integers named by `columns`."""
    update = f"bytes_up = {table}.bytes_up + excluded.bytes_up, " + (
        f"bytes_down = {table}.bytes_down + excluded.bytes_down"
    )
    names = ", ".join(columns)
    if _pg():
        arrays = ", ".join(["%s::bigint[]"] * (len(columns) + 3))
        given = ", ".join(f"v.{c}" for c in columns)
        _execute(
            f"""INSERT INTO {table} ({names}, hour, bytes_up, bytes_down)
                SELECT {given}, TIMESTAMPTZ 'epoch' + v.h * INTERVAL '1 microsecond', v.up, v.down
                FROM unnest({arrays}) AS v({names}, h, up, down)
                ON CONFLICT ({key}) DO UPDATE SET {update}""",
            [_array(column) for column in zip(*rows, strict=True)],
        )
        return
    hours: dict[int, datetime] = {}
    converted = [
        (*row[:-3], hours.setdefault(row[-3], moment(row[-3])), row[-2], row[-1]) for row in rows
    ]
    for chunk in _chunks(converted):
        values, params = _values(chunk)
        _execute(
            f"""INSERT INTO {table} ({names}, hour, bytes_up, bytes_down) VALUES {values}
                ON CONFLICT ({key}) DO UPDATE SET {update}""",
            params,
        )


def buckets_add(rows: Sequence[Row]) -> None:
    """Add (user_id, subscription_id, hour µs, bytes_up, bytes_down) to hourly buckets."""
    if rows:
        _hourly_upsert(
            UsageBucket._meta.db_table,
            "subscription_id, hour",
            ("user_id", "subscription_id"),
            rows,
        )


def unplanned_add(rows: Sequence[Row]) -> None:
    """Add (user_id, hour µs, bytes_up, bytes_down) to the hourly bytes of users without a
    plan at the time."""
    if rows:
        _hourly_upsert(UnplannedUsage._meta.db_table, "user_id, hour", ("user_id",), rows)


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


LEDGER_COLUMNS = (
    "instance_id",
    "user_id",
    "held_bytes",
    "request_id",
    "granted_bytes",
    "returned_bytes",
)


def ledger_lock(user_ids: Sequence[int]) -> list[Row]:
    """The grant ledger rows of `user_ids` (all instances), locked in user order:
    LEDGER_COLUMNS, then expires_at in microseconds (None: nothing held)."""
    table = QuotaGrantLedger._meta.db_table
    columns = ", ".join(LEDGER_COLUMNS)
    if _pg():
        expires = "(EXTRACT(EPOCH FROM expires_at) * 1000000)::bigint"
        lock = " FOR NO KEY UPDATE"
    else:
        expires, lock = "expires_at", ""
    rows = _select_in(
        f"""SELECT {columns}, {expires} FROM {table} WHERE user_id {{ids}}
            ORDER BY user_id, instance_id{lock}""",
        sorted(user_ids),
    )
    if _pg():
        return rows
    return [(*row[:-1], _sqlite_us(row[-1])) for row in rows]


def ledger_write(rows: Sequence[Row], now: datetime) -> None:
    """Write (instance_id, user_id, held, request_id, granted, returned, expires µs|None)
    rows of the grant ledger (absolute values: the rows are locked)."""
    if not rows:
        return
    table = QuotaGrantLedger._meta.db_table
    ordered = sorted(rows, key=lambda r: (r[1], r[0]))
    update = ", ".join(
        f"{c} = excluded.{c}"
        for c in ("held_bytes", "request_id", "granted_bytes", "returned_bytes", "expires_at")
    )
    columns = "instance_id, user_id, held_bytes, request_id, granted_bytes, returned_bytes"
    if _pg():
        names = sorted({r[0] for r in ordered})
        index = {name: n for n, name in enumerate(names, 1)}
        _execute(
            f"""INSERT INTO {table} ({columns}, expires_at, updated_at)
                SELECT (%s::text[])[v.x], v.u, v.h, v.r, v.g, v.b,
                       TIMESTAMPTZ 'epoch' + v.e * INTERVAL '1 microsecond', %s
                FROM unnest(%s::int[], %s::bigint[], %s::bigint[], %s::bigint[],
                            %s::bigint[], %s::bigint[], %s::bigint[])
                  AS v(x, u, h, r, g, b, e)
                ON CONFLICT (instance_id, user_id) DO UPDATE
                  SET {update}, updated_at = excluded.updated_at""",
            [
                names,
                now,
                _array([index[r[0]] for r in ordered]),
                *(_array([r[i] for r in ordered]) for i in range(1, 6)),
                "{" + ",".join("NULL" if r[6] is None else str(r[6]) for r in ordered) + "}",
            ],
        )
        return
    converted = [(*r[:6], None if r[6] is None else moment(r[6]), now) for r in ordered]
    for chunk in _chunks(converted):
        values, params = _values(chunk)
        _execute(
            f"""INSERT INTO {table} ({columns}, expires_at, updated_at) VALUES {values}
                ON CONFLICT (instance_id, user_id) DO UPDATE
                  SET {update}, updated_at = excluded.updated_at""",
            params,
        )
