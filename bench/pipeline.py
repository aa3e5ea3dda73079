"""Event pipeline benchmark (`make bench`): prints two numbers from one run.

1. Throughput: UserConsumedTrafficEvents/s from the producer to committed plans-DB rows,
   through tansu and one plan-controller loop (the code the worker bootstep runs).
2. Enforcement latency: a user's wire bytes cross the plan limit -> the proxy cuts the
   connection; p50/p99 over several users, with the real runproxy, Celery worker and
   tansu, measured on the client side.

Runs on throw-away SQLite databases under a temp dir (or ACCOUNTS/PLANS_DATABASE_URL if
set). Usage: .venv/bin/python bench/pipeline.py [--events N] [--users N] [--cuts N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(tmp: Path) -> None:
    os.environ.setdefault("ACCOUNTS_DATABASE_URL", f"sqlite:///{tmp / 'accounts.sqlite3'}")
    os.environ.setdefault("PLANS_DATABASE_URL", f"sqlite:///{tmp / 'plans.sqlite3'}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "goproxy_site.settings.test"
    os.environ["GOPROXY_TEST_DB_SUFFIX"] = f"_bench{os.getpid()}"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("migrate", database="plans", verbosity=0)


def throughput(bootstrap: str, events: int, users: int) -> None:
    from django.conf import settings

    from goproxy_site.events import schemas
    from goproxy_site.events.kafka import KafkaEventConsumer, KafkaEventProducer, topics_ensure
    from goproxy_site.outbox import OutboxRelay
    from plans.consumer import PlanController
    from plans.models import Plan, Subscription
    from plans.services import plan_assign

    plan = Plan.objects.create(name="bench-unlimited", duration_days=30)
    for uid in range(1, users + 1):
        plan_assign(user_id=uid, plan=plan)
    topics_ensure(
        [
            settings.KAFKA_TOPIC_TRAFFIC,
            settings.KAFKA_TOPIC_CONTROL,
            settings.KAFKA_TOPIC_DEAD_LETTER,
        ]
    )
    producer = KafkaEventProducer()
    t0 = time.perf_counter()
    for i in range(events):
        producer.send(
            schemas.UserConsumedTrafficEvent(
                user_id=i % users + 1, bytes_up=100, bytes_down=1000, instance_id="bench", seq=i + 1
            )
        )
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(60)
    produced = time.perf_counter() - t0
    consumer = KafkaEventConsumer(group_id="bench", topics=[settings.KAFKA_TOPIC_TRAFFIC])
    controller = PlanController(
        consumer=consumer,
        producer=producer,
        relay=OutboxRelay(producer),
    )
    t1 = time.monotonic()
    deadline = time.monotonic() + 600
    while controller.applied < events and time.monotonic() < deadline:
        controller.step()
    done = time.monotonic()
    joined = (consumer.assigned_at or t1) - t1
    applied = done - t1 - joined
    controller.consumer.close()
    total = sum(s.bytes_used for s in Subscription.objects.all())
    assert total == events * 1100, f"plans DB holds {total} bytes, expected {events * 1100}"
    print(f"pipeline: produced {events} events in {produced:.2f}s ({events / produced:,.0f}/s)")
    print(
        f"pipeline: applied + committed {controller.applied} events for {users} users in "
        f"{applied:.2f}s on one plan-controller loop: {controller.applied / applied:,.0f} "
        f"events/s (after a {joined:.1f}s consumer group join)"
    )


def enforcement(tmp: Path, bootstrap: str, cuts: int) -> None:
    from accounts.services import credential_issue, user_create
    from goproxy_site.tests.support.stack import kafka_proxy
    from goproxy_site.tests.support.traffic import StreamOrigin, UserTraffic, fetch
    from goproxy_site.tests.support.worker import WorkerProcess, stack_env
    from plans.models import Plan
    from plans.services import plan_assign

    limit = 1_000_000
    plan = Plan.objects.create(name="bench-small", traffic_limit_bytes=limit, duration_days=30)
    users = []
    for i in range(cuts):
        user = user_create(username=f"bench-{i}", email=f"bench-{i}@example.org")
        secret = credential_issue(user=user, login=f"bench-{i}").secret
        plan_assign(user_id=user.pk, plan=plan)
        users.append(UserTraffic(f"bench-{i}", secret, limit=limit))
    origin = StreamOrigin()
    worker = WorkerProcess(stack_env(bootstrap, tmp), tmp / "worker.log")
    proxy = kafka_proxy(tmp, bootstrap)
    latencies: list[float] = []
    try:
        worker.start()
        proxy.start()

        def run(user: UserTraffic) -> None:
            r = fetch(proxy.port, user, origin.port, "/stream?n=50000000&rate=500000")
            if user.crossed_at is not None and not r.complete:
                latencies.append(r.ended_at - user.crossed_at)

        for start in range(0, cuts, 10):
            threads = [threading.Thread(target=run, args=(u,)) for u in users[start : start + 10]]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
    finally:
        proxy.stop()
        worker.stop(timeout=3.0)
        origin.shutdown()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    print(
        f"pipeline: enforcement latency (limit crossed -> connection cut) over {len(latencies)} "
        f"users: p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
        f"(report interval 1 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--cuts", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="goproxy-pipeline-") as tmpdir:
        tmp = Path(tmpdir)
        setup_django(tmp)
        from django.conf import settings

        from goproxy_site.tests.support.broker import TansuBroker

        broker = TansuBroker(log_path=tmp / "tansu.log").start()
        settings.KAFKA_BOOTSTRAP_SERVERS = broker.bootstrap
        try:
            throughput(broker.bootstrap, args.events, args.users)
            enforcement(tmp, broker.bootstrap, args.cuts)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
