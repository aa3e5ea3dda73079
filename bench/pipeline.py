"""Event pipeline benchmark (`make bench`, or on its own): the plan-controller at scale.

For each database (PostgreSQL and SQLite) and each user count (500, 2,000, 20,000 users
reporting through 4 proxy instances), from produce to committed rows:

- events/s of one plan-controller worker (the loop the Celery bootstep runs, in its own
  process, on a real tansu broker), every total checked to the byte afterwards;
- statements per batch (counted with a query wrapper, not estimated) and the batch
  duration p50/p99;
- the ceilings measured in the same run: a raw bulk upsert of the same number of rows on
  the same database (one statement, no logic), and the raw consume rate of the broker
  (messages/s, and events/s with decoding);
- on PostgreSQL at 20,000 users, two workers on 6 partitions.

Then enforcement under load: 2,000 users reporting every second through two proxy
instances into one real Celery worker, while users on a 5 MB plan download at full
speed through the two proxies; the time from crossing the limit to the cut, p50/p99.

Usage: .venv/bin/python bench/pipeline.py [--db sqlite|postgres|both] [--users 500,2000]
       [--rounds N] [--no-scaling] [--no-enforcement]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_NAMES = ("goproxy_bench_accounts", "goproxy_bench_plans")
INSTANCES = 4


def pg_url(name: str) -> str:
    host = os.environ.get("PGHOST", "127.0.0.1")
    user = os.environ.get("PGUSER", "postgres")
    return f"postgres://{user}@{host}:5432/{name}"


def databases_fresh(db: str, tmp: Path) -> None:
    """Point Django at empty databases of kind `db` (PostgreSQL ones are recreated)."""
    if db == "postgres":
        import psycopg

        with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
            for name in PG_NAMES:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["ACCOUNTS_DATABASE_URL"] = pg_url(PG_NAMES[0])
        os.environ["PLANS_DATABASE_URL"] = pg_url(PG_NAMES[1])
    else:
        os.environ["ACCOUNTS_DATABASE_URL"] = f"sqlite:///{tmp / 'accounts.sqlite3'}"
        os.environ["PLANS_DATABASE_URL"] = f"sqlite:///{tmp / 'plans.sqlite3'}"


def setup_django() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "goproxy_site.settings.test"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("migrate", database="plans", verbosity=0)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the worker process ----------------------------------------------------------------


def worker_main(args: argparse.Namespace) -> None:
    """One plan-controller loop in its own process; statements and batches recorded."""
    setup_django()
    from django.db import connections

    from goproxy_site.events.kafka import KafkaEventConsumer, KafkaEventProducer
    from goproxy_site.outbox import OutboxRelay
    from plans.consumer import Fetched, PlanController

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    statements = [0]
    batches: list[tuple[int, float, int]] = []
    assigned: list[list[tuple[str, int]]] = [[]]

    def count(execute: Callable[..., Any], sql: str, params: Any, many: bool, ctx: Any) -> Any:
        statements[0] += 1
        return execute(sql, params, many, ctx)

    class Measured(PlanController):
        """The worker's loop (run(): the next batch fetched while one is applied), with
        each batch's events, seconds and statements recorded."""

        def handle(self, fetched: Fetched) -> bool:
            before = self.applied
            statements[0] = 0
            started = time.perf_counter()
            busy = super().handle(fetched)
            if busy:
                batches.append(
                    (self.applied - before, time.perf_counter() - started, statements[0])
                )
                print(f"applied {self.applied} {time.time():.6f}", flush=True)
            if consumer.assigned != assigned[0]:
                assigned[0] = list(consumer.assigned)
                print(f"assigned {json.dumps(assigned[0])}", flush=True)
            return busy

    producer = KafkaEventProducer()
    consumer = KafkaEventConsumer(group_id=args.group, topics=[args.topic])
    controller = Measured(
        consumer=consumer,
        producer=producer,
        relay=OutboxRelay(producer),
        should_stop=stop.is_set,
    )
    with connections["plans"].execute_wrapper(count):
        controller.run()
    Path(args.stats).write_text(json.dumps({"batches": batches, "applied": controller.applied}))


# -- the measuring side ----------------------------------------------------------------


class Worker:
    def __init__(self, tmp: Path, group: str, topic: str, index: int) -> None:
        self.stats = tmp / f"worker-{index}.json"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--group", group, "--topic", topic],
            env={**os.environ, "BENCH_STATS": str(self.stats)},
            stdout=subprocess.PIPE,
            stderr=open(tmp / f"worker-{index}.log", "wb"),
            cwd=ROOT,
            text=True,
        )
        self.assigned: list[tuple[str, int]] = []
        self.applied = 0
        self.last_commit = 0.0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, _, rest = line.partition(" ")
            if kind == "assigned":
                self.assigned = [tuple(p) for p in json.loads(rest)]
            elif kind == "applied":
                count, at = rest.split()
                self.applied, self.last_commit = int(count), float(at)

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        data: dict[str, Any] = json.loads(self.stats.read_text())
        return data


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.05)


def seed(users: int, offset: int) -> tuple[list[int], int]:
    """`users` accounts users, each with a current subscription on a 1 TB plan (large
    enough that no threshold is reached: the steady state the bench measures)."""
    from django.contrib.auth.hashers import make_password
    from django.utils import timezone

    from accounts.models import User
    from plans.models import Plan, Subscription

    password = make_password(None)
    User.objects.bulk_create(
        [
            User(username=f"b{offset + i}", email=f"b{offset + i}@example.org", password=password)
            for i in range(users)
        ],
        batch_size=5000,
    )
    ids = list(
        User.objects.filter(username__startswith="b")
        .order_by("-pk")
        .values_list("pk", flat=True)[:users]
    )
    plan, _ = Plan.objects.get_or_create(
        name="bench-1tb", defaults={"traffic_limit_bytes": 10**12, "duration_days": 30}
    )
    start = timezone.now() - timedelta(days=1)
    Subscription.objects.bulk_create(
        [
            Subscription(
                user_id=uid,
                plan=plan,
                status="active",
                is_current=True,
                current_from=start,
                started_at=start,
                period_started_at=start,
                expires_at=start + timedelta(days=30),
                traffic_limit_bytes=plan.traffic_limit_bytes,
            )
            for uid in ids
        ],
        batch_size=5000,
    )
    return ids, plan.pk


def produce(topic: str, user_ids: list[int], rounds: int) -> int:
    """`rounds` deltas per user, each round through one of INSTANCES proxy instances."""
    from goproxy_site.events import schemas
    from goproxy_site.events.kafka import KafkaEventProducer

    producer = KafkaEventProducer()
    seqs = [0] * INSTANCES
    sent = 0
    base = datetime.now(UTC) - timedelta(seconds=rounds + 1)
    for r in range(rounds):
        at = base + timedelta(seconds=r)
        for uid in user_ids:
            instance = (uid + r) % INSTANCES
            seqs[instance] += 1
            producer.send(
                schemas.UserConsumedTrafficEvent(
                    occurred_at=at,
                    user_id=uid,
                    bytes_up=100,
                    bytes_down=1000,
                    instance_id=f"bench-proxy-{instance}",
                    seq=seqs[instance],
                ),
                topic=topic,
            )
            sent += 1
            if sent % 5000 == 0:
                producer.poll(0)
    producer.flush(120)
    return sent


def billed(user_ids: list[int]) -> int:
    from django.db.models import F, Sum

    from plans.models import Subscription

    total = Subscription.objects.filter(user_id__in=user_ids).aggregate(
        n=Sum(F("bytes_up") + F("bytes_down"))
    )["n"]
    return int(total or 0)


def raw_upsert_ceiling(rows: int) -> float:
    """Rows/s of one INSERT ... ON CONFLICT DO UPDATE (increments) of `rows` existing
    rows on the plans DB: the cheapest write a batch of that many users could be."""
    from django.db import connections

    conn = connections["plans"]
    pg = conn.vendor == "postgresql"
    keys = list(range(rows))
    with conn.cursor() as c:
        c.execute("DROP TABLE IF EXISTS bench_raw")
        c.execute("CREATE TABLE bench_raw (k bigint PRIMARY KEY, up bigint, down bigint)")
    best = float("inf")
    for _ in range(4):
        started = time.perf_counter()
        with conn.cursor() as c:
            if pg:
                c.execute(
                    "INSERT INTO bench_raw SELECT * FROM unnest(%s::bigint[], %s::bigint[], "
                    "%s::bigint[]) ON CONFLICT (k) DO UPDATE SET up = bench_raw.up + "
                    "excluded.up, down = bench_raw.down + excluded.down",
                    [keys, [100] * rows, [1000] * rows],
                )
            else:
                for s in range(0, rows, 4000):
                    chunk = keys[s : s + 4000]
                    values = ", ".join(["(%s, 100, 1000)"] * len(chunk))
                    c.execute(
                        f"INSERT INTO bench_raw VALUES {values} ON CONFLICT (k) DO UPDATE "
                        "SET up = bench_raw.up + excluded.up, down = bench_raw.down + "
                        "excluded.down",
                        chunk,
                    )
        conn.commit() if not conn.get_autocommit() else None
        best = min(best, time.perf_counter() - started)
    with conn.cursor() as c:
        c.execute("DROP TABLE bench_raw")
    return rows / best


def raw_consume(topic: str, total: int) -> tuple[float, float]:
    """Messages/s reading the whole topic in a fresh group, and events/s decoding them."""
    from goproxy_site.events import schemas
    from goproxy_site.events.kafka import KafkaEventConsumer

    consumer = KafkaEventConsumer(group_id=f"raw-{time.time_ns()}", topics=[topic])
    msgs: list[Any] = []
    deadline = time.monotonic() + 120
    while len(msgs) < total and time.monotonic() < deadline:
        msgs += consumer.consume(20000, 0.5)
    # From the group join (the broker holds it for half the session timeout) to the end.
    took = time.monotonic() - (consumer.assigned_at or time.monotonic())
    consumer.close()
    started = time.perf_counter()
    for m in msgs:
        schemas.from_json(m.value)
    decode = time.perf_counter() - started
    return len(msgs) / max(took, 1e-9), len(msgs) / max(took + decode, 1e-9)


def throughput(
    tag: str, tmp: Path, users: int, rounds: int, workers: int, offset: int
) -> dict[str, float]:
    from django.conf import settings

    from goproxy_site.events.kafka import topics_ensure

    user_ids, _plan = seed(users, offset)
    topic = f"bench.traffic.{users}.{workers}.{time.time_ns()}"
    topics_ensure(
        [topic, settings.KAFKA_TOPIC_CONTROL, settings.KAFKA_TOPIC_DEAD_LETTER], partitions=6
    )
    group = f"bench-{time.time_ns()}"
    procs = [Worker(tmp, group, topic, i) for i in range(workers)]
    try:
        wait(
            lambda: sum(len(w.assigned) for w in procs) == 6 and all(w.assigned for w in procs),
            60,
            "the consumer group to settle",
        )
        time.sleep(0.5)
        expected_bytes = billed(user_ids) + users * rounds * 1100
        started = time.time()
        sent = produce(topic, user_ids, rounds)
        produced = time.time() - started
        wait(lambda: sum(w.applied for w in procs) >= sent, 600, "the backlog to be applied")
        finished = max(w.last_commit for w in procs)
        stats = [w.stop() for w in procs]
    finally:
        for w in procs:
            if w.proc.poll() is None:
                w.proc.kill()
    got = billed(user_ids)
    assert got == expected_bytes, f"plans DB holds {got} bytes, expected {expected_bytes}"
    rate = sent / (finished - started)
    batches = [b for s in stats for b in s["batches"] if b[0]]
    seconds = [b[1] for b in batches]
    per_batch = [b[2] for b in batches]
    line = (
        f"pipeline: [{tag}] {users} users via {INSTANCES} proxies, {workers} worker(s): "
        f"{rate:,.0f} events/s from produce to committed rows ({sent} events, produced in "
        f"{produced:.1f} s, totals exact); {len(batches)} batches of {sent / len(batches):,.0f} "
        f"events on average, {statistics.median(per_batch):.0f} statements per batch "
        f"(max {max(per_batch)}), batch p50 {statistics.median(seconds) * 1000:.0f} ms "
        f"p99 {percentile(seconds, 0.99) * 1000:.0f} ms"
    )
    print(line, flush=True)
    result = {"rate": rate, "sent": sent}
    if workers == 1:
        ceiling = raw_upsert_ceiling(users)
        consume, decoded = raw_consume(topic, sent)
        print(
            f"pipeline: [{tag}] {users} users, ceilings in the same run: raw bulk upsert of "
            f"{users} rows {ceiling:,.0f} rows/s (pipeline at {rate / ceiling:.2f} of it); "
            f"raw consume {consume:,.0f} messages/s, {decoded:,.0f} events/s decoded "
            f"(pipeline at {rate / decoded:.2f} of it)",
            flush=True,
        )
    return result


def throughput_main(args: argparse.Namespace) -> None:
    """The throughput rows for one database (this process is set up for it)."""
    from django.conf import settings

    from goproxy_site.tests.support.broker import TansuBroker

    with tempfile.TemporaryDirectory(prefix="goproxy-pipeline-") as tmpdir:
        tmp = Path(tmpdir)
        databases_fresh(args.db, tmp)
        setup_django()
        migrate()
        broker = TansuBroker(log_path=tmp / "tansu.log").start()
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
        settings.KAFKA_BOOTSTRAP_SERVERS = broker.bootstrap
        tag = "PostgreSQL" if args.db == "postgres" else "SQLite"
        try:
            offset = 0
            one: dict[int, float] = {}
            for users in args.users:
                one[users] = throughput(tag, tmp, users, args.rounds, 1, offset)["rate"]
                offset += users
            biggest = max(args.users)
            if args.scaling and args.db == "postgres":
                two = throughput(tag, tmp, biggest, args.rounds, 2, offset)["rate"]
                print(
                    f"pipeline: [{tag}] {biggest} users, 2 workers on 6 partitions: "
                    f"{two:,.0f} events/s, {two / one[biggest]:.2f}x one worker (2 CPUs "
                    "shared by both workers, PostgreSQL, tansu and the producer)",
                    flush=True,
                )
        finally:
            broker.stop()


# -- enforcement under load --------------------------------------------------------------


@contextmanager
def background_load(topic: str, user_ids: list[int], per_second: int) -> Iterator[list[int]]:
    """Deltas of `user_ids` from two proxy instances at `per_second` events/s, in a thread."""
    from goproxy_site.events import schemas
    from goproxy_site.events.kafka import KafkaEventProducer

    stop = threading.Event()
    sent = [0]

    def run() -> None:
        producer = KafkaEventProducer()
        seqs = {"load-a": 0, "load-b": 0}
        tick = time.monotonic()
        while not stop.is_set():
            for i, uid in enumerate(user_ids[:per_second]):
                instance = "load-a" if i % 2 else "load-b"
                seqs[instance] += 1
                producer.send(
                    schemas.UserConsumedTrafficEvent(
                        user_id=uid,
                        bytes_up=50,
                        bytes_down=500,
                        instance_id=instance,
                        seq=seqs[instance],
                    ),
                    topic=topic,
                )
                sent[0] += 1
            producer.poll(0)
            tick += 1.0
            stop.wait(max(0.0, tick - time.monotonic()))
        producer.flush(30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join(60)


def enforcement_main(args: argparse.Namespace) -> None:
    """Crossing -> cut latency of 5 MB plans at full speed, under 2,000 users' reports."""
    with tempfile.TemporaryDirectory(prefix="goproxy-enforce-") as tmpdir:
        tmp = Path(tmpdir)
        databases_fresh(args.db, tmp)
        setup_django()
        migrate()
        from django.conf import settings

        from accounts.services import credential_issue, user_create
        from goproxy_site.tests.support.broker import TansuBroker
        from goproxy_site.tests.support.stack import kafka_proxy
        from goproxy_site.tests.support.traffic import StreamOrigin, UserTraffic, fetch
        from goproxy_site.tests.support.worker import WorkerProcess, stack_env
        from plans.models import Plan, UserRestriction
        from plans.services import plan_assign

        broker = TansuBroker(log_path=tmp / "tansu.log").start()
        settings.KAFKA_BOOTSTRAP_SERVERS = broker.bootstrap
        load_ids, _plan = seed(args.load_users, 0)
        limit = 5_000_000
        plan = Plan.objects.create(name="bench-5mb", traffic_limit_bytes=limit, duration_days=30)
        users = []
        for i in range(args.cuts):
            user = user_create(username=f"cut-{i}", email=f"cut-{i}@example.org")
            secret = credential_issue(user=user, login=f"cut-{i}").secret
            plan_assign(user_id=user.pk, plan=plan)
            users.append(UserTraffic(f"cut-{i}", secret, limit=limit, user_id=user.pk))
        origin = StreamOrigin()
        worker = WorkerProcess(stack_env(broker.bootstrap, tmp), tmp / "worker.log")
        for i in range(2):
            (tmp / f"proxy-{i}").mkdir()
        proxies = [kafka_proxy(tmp / f"proxy-{i}", broker.bootstrap) for i in range(2)]
        latencies: list[float] = []
        to_db: list[float] = []
        over: list[int] = []
        try:
            worker.start()
            for proxy in proxies:
                proxy.start()
            with background_load(settings.KAFKA_TOPIC_TRAFFIC, load_ids, args.load_users) as sent:
                time.sleep(3.0)  # the worker is in its steady state under the load

                def run(user: UserTraffic, proxy_port: int) -> None:
                    r = fetch(proxy_port, user, origin.port, "/stream?n=2000000000")
                    if user.crossed_at is not None and not r.complete:
                        latencies.append(r.ended_at - user.crossed_at)
                        over.append(user.received + user.sent - limit)
                        # When the worker wrote the restriction (same clock: one machine).
                        row = UserRestriction.objects.get(user_id=user.user_id)
                        restricted = row.updated_at.timestamp() - (time.time() - time.monotonic())
                        to_db.append(restricted - user.crossed_at)

                # One download at a time, alternating proxies: the latency of one cut
                # under the load, not of ten downloads starving two CPUs.
                for i, traffic in enumerate(users):
                    run(traffic, proxies[i % 2].port)
                load = sent[0]
        finally:
            for proxy in proxies:
                proxy.stop()
            worker.stop(timeout=5.0)
            origin.shutdown()
            broker.stop()
        tag = "PostgreSQL" if args.db == "postgres" else "SQLite"
        print(
            f"pipeline: [{tag}] enforcement under load ({args.load_users} users reporting every "
            f"second through 2 proxies, one worker, {load} background events): crossing a 5 MB "
            f"limit -> cut over {len(latencies)} full-speed downloads: p50 "
            f"{statistics.median(latencies) * 1000:.0f} ms, p99 "
            f"{percentile(latencies, 0.99) * 1000:.0f} ms (of which crossing -> restriction "
            f"committed by the worker p50 {statistics.median(to_db) * 1000:.0f} ms, p99 "
            f"{percentile(to_db, 0.99) * 1000:.0f} ms); bytes past the limit p50 "
            f"{statistics.median(over) / 1e6:.1f} MB, p99 {percentile(over, 0.99) / 1e6:.1f} MB",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--users", type=lambda v: [int(x) for x in v.split(",")], default=[500, 2000, 20000]
    )
    parser.add_argument("--rounds", type=int, default=5, help="deltas per user")
    parser.add_argument("--no-scaling", dest="scaling", action="store_false")
    parser.add_argument("--no-enforcement", dest="enforcement", action="store_false")
    parser.add_argument("--no-throughput", dest="throughput", action="store_false")
    parser.add_argument("--load-users", type=int, default=2000)
    parser.add_argument("--cuts", type=int, default=10)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.stats = os.environ["BENCH_STATS"]
        worker_main(args)
        return
    if args.db == "both":
        # One process per database: Django is set up once per process.
        base = [sys.executable, __file__, *(a for a in sys.argv[1:] if not a.startswith("--db"))]
        for db in ("postgres", "sqlite"):
            extra = [] if db == "postgres" else ["--no-scaling", "--no-enforcement"]
            subprocess.run([*base, "--db", db, *extra], check=True)
        return
    if args.throughput:
        throughput_main(args)
    if args.enforcement:
        subprocess.run(
            [sys.executable, __file__, "--db", args.db, "--no-throughput", "--no-scaling"],
            check=True,
        ) if args.throughput else enforcement_main(args)


if __name__ == "__main__":
    main()
