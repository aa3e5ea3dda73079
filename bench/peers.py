"""Side-by-side proxy benchmark: direct nginx, goproxy, squid, tinyproxy and proxy.py.

Called by bench/run.sh, which starts nginx (the one origin) and goproxy. This script
starts the peers with equivalent settings (Basic auth on every request, no access log,
no cache), runs every scenario against every target in one run, prints a table of
ratios and writes it into bench/RESULTS.md between the BENCH markers.

Every loop is bounded: wrk runs for a fixed duration, ab for a fixed count with a
timeout, curl with --max-time, idle tunnels up to a fixed count with a deadline.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- BENCH:BEGIN -->", "<!-- BENCH:END -->"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    for _ in range(1000):  # bounded walk of the process tree
        if not todo:
            break
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def tree_cpu(pid: int) -> float:
    """user+sys CPU seconds of pid and its descendants."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / hz


def tree_rss_kib(pid: int) -> int:
    total = 0
    for p in descendants(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


@dataclass
class Target:
    name: str
    port: int | None  # None: direct to the origin
    pid: int | None = None
    results: dict[str, float | str] = field(default_factory=dict)


# Peers --------------------------------------------------------------------------------
def start_squid(
    work: Path, origin_port: int, sink_port: int, login: str, secret: str
) -> subprocess.Popen:
    port = free_port()
    d = work / "squid"
    d.mkdir()
    # On stdin: a generated secret may start with "-", which openssl would take for an option.
    hashed = subprocess.run(
        ["openssl", "passwd", "-apr1", "-stdin"],
        input=secret + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (d / "htpasswd").write_text(f"{login}:{hashed}\n")
    (d / "squid.conf").write_text(
        f"""
workers 1
http_port 127.0.0.1:{port}
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log none
cache_store_log none
cache deny all
coredump_dir {d}
auth_param basic program /usr/lib/squid/basic_ncsa_auth {d}/htpasswd
auth_param basic children 5
auth_param basic credentialsttl 2 hours
acl authed proxy_auth REQUIRED
acl SSL_ports port {origin_port} {sink_port}
acl Safe_ports port {origin_port} {sink_port}
http_access deny CONNECT !SSL_ports
http_access allow localhost authed
http_access deny all
via off
forwarded_for delete
client_persistent_connections on
server_persistent_connections on
max_filedescriptors 20000
shutdown_lifetime 1 seconds
"""
    )
    for p in (d, d / "htpasswd", d / "squid.conf"):
        p.chmod(0o777 if p.is_dir() else 0o644)
    shutil.chown(d, "proxy", "proxy")
    proc = subprocess.Popen(
        ["squid", "-N", "-f", str(d / "squid.conf")],
        stdout=subprocess.DEVNULL,
        stderr=open(d / "stderr.log", "wb"),
        start_new_session=True,
    )
    proc.port = port  # type: ignore[attr-defined]
    return proc


def start_tinyproxy(
    work: Path, origin_port: int, sink_port: int, login: str, secret: str
) -> subprocess.Popen:
    port = free_port()
    d = work / "tinyproxy"
    d.mkdir()
    (d / "tinyproxy.conf").write_text(
        f"""
User nobody
Group nogroup
Port {port}
Listen 127.0.0.1
Timeout 600
MaxClients 10000
Allow 127.0.0.1
BasicAuth {login} {secret}
ConnectPort {origin_port}
ConnectPort {sink_port}
DisableViaHeader Yes
LogLevel Critical
LogFile "{d}/tinyproxy.log"
"""
    )
    d.chmod(0o777)
    proc = subprocess.Popen(
        ["tinyproxy", "-d", "-c", str(d / "tinyproxy.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    proc.port = port  # type: ignore[attr-defined]
    return proc


def start_proxypy(work: Path, login: str, secret: str, python: str) -> subprocess.Popen:
    port = free_port()
    proc = subprocess.Popen(
        [
            python, "-m", "proxy", "--basic-auth", f"{login}:{secret}",
            "--hostname", "127.0.0.1", "--port", str(port),
            "--num-workers", "2", "--log-level", "ERROR",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "proxypy.log", "wb"),
        start_new_session=True,
        cwd=work,
    )  # fmt: skip
    proc.port = port  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


# Scenarios ------------------------------------------------------------------------------
def wrk(t: Target, url: str, auth: str, work: Path, conns: int, seconds: int) -> dict:
    script = work / f"wrk-{t.name}.lua"
    if t.port is None:
        script.write_text("")
        cmd_url = url
    else:
        host = url.split("/")[2]
        script.write_text(
            f'wrk.path = "{url}"\nwrk.headers["Host"] = "{host}"\n'
            f'wrk.headers["Proxy-Authorization"] = "Basic {auth}"\n'
        )
        cmd_url = f"http://127.0.0.1:{t.port}"
    threads = min(2, conns)
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "--latency"]
    cmd += ["-s", str(script), cmd_url]
    cpu0 = tree_cpu(t.pid) if t.pid else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    cpu = (tree_cpu(t.pid) - cpu0) if t.pid else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": _ms(out, "50%"),
        "p99": _ms(out, "99%"),
        "errors": errors,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "cpu_us": cpu / total * 1e6 if total and cpu else 0.0,
    }


def _ms(out: str, pct: str) -> float:
    m = re.search(rf"{re.escape(pct)}\s+([\d.]+)(us|ms|s)\b", out)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def ab(t: Target, url: str, login: str, secret: str, n: int) -> dict:
    cmd = ["ab", "-q", "-s", "10", "-n", str(n), "-c", "50"]
    if t.port is not None:
        cmd += ["-X", f"127.0.0.1:{t.port}", "-P", f"{login}:{secret}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=300).stdout
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "failed": (int(failed.group(1)) if failed else n) + (int(non2xx.group(1)) if non2xx else 0),
    }


def curl_bulk(
    t: Target, url: str, login: str, secret: str, *, tunnel: bool, upload: Path | None
) -> tuple[float, int, str, float]:
    cmd = ["curl", "-s", "-o", "/dev/null", "--max-time", "60", "-H", "Expect:"]
    if t.port is not None:
        cmd += ["-x", f"http://127.0.0.1:{t.port}", "-U", f"{login}:{secret}"]
        if tunnel:
            cmd.append("-p")
    if upload is not None:
        cmd += [
            "-T",
            str(upload),
            "-X",
            "POST",
            "-w",
            "%{speed_upload} %{size_upload} %{http_code}",
        ]
    else:
        cmd += ["-w", "%{speed_download} %{size_download} %{http_code}"]
    cpu0 = tree_cpu(t.pid) if t.pid else 0.0
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=180).stdout.split()
    cpu = (tree_cpu(t.pid) - cpu0) if t.pid else 0.0
    speed, size, code = float(out[0]), int(out[1]), out[2]
    return speed / 1e6, size, code, cpu


def idle_tunnels(t: Target, origin_port: int, auth: str, n: int, deadline_s: float) -> dict:
    """Open up to n idle CONNECT tunnels; RSS growth of the proxy's process tree per tunnel."""
    request = (
        f"CONNECT 127.0.0.1:{origin_port} HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n"
        f"Proxy-Authorization: Basic {auth}\r\n\r\n"
    ).encode()
    assert t.pid is not None and t.port is not None
    time.sleep(0.5)
    before = tree_rss_kib(t.pid)
    socks: list[socket.socket] = []
    deadline = time.monotonic() + deadline_s
    error = ""
    try:
        for _ in range(n):
            if time.monotonic() > deadline:
                error = "deadline"
                break
            s = socket.create_connection(("127.0.0.1", t.port), timeout=10)
            socks.append(s)
            s.sendall(request)
            reply = b""
            while b"\r\n\r\n" not in reply and len(reply) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            if not reply.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                error = f"refused: {reply[:40]!r}"
                break
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    time.sleep(1.0)
    after = tree_rss_kib(t.pid)
    kib = (after - before) / max(1, len(socks))
    return {"socks": socks, "opened": len(socks), "kib": kib if kib > 0 else float("nan"),
            "error": error}  # fmt: skip


# Table ----------------------------------------------------------------------------------
def fmt(v: float | str, spec: str = ",.0f") -> str:
    if isinstance(v, str):
        return v
    if v != v:  # NaN
        return "n/a"
    return format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--origin-port", type=int, required=True)
    ap.add_argument("--sink-port", type=int, required=True, help="bench/sink.py (uploads)")
    ap.add_argument("--proxy-port", type=int, required=True)
    ap.add_argument("--proxy-pid", type=int, required=True)
    ap.add_argument("--login", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--big", type=Path, required=True, help="the 1 GiB file nginx serves")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--ab-requests", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved small-request rounds")
    ap.add_argument("--idle", type=int, default=9900)
    ap.add_argument("--peers", default="squid,tinyproxy,proxy.py")
    ap.add_argument("--extra", default="", help="name=port:pid of more goproxy variants")
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    login, secret = args.login, args.secret
    auth = base64.b64encode(f"{login}:{secret}".encode()).decode()
    small = f"http://127.0.0.1:{args.origin_port}/small"
    big = f"http://127.0.0.1:{args.origin_port}/big"
    upload_url = f"http://127.0.0.1:{args.sink_port}/upload"
    targets = [Target("direct", None), Target("goproxy", args.proxy_port, args.proxy_pid)]
    for extra in filter(None, args.extra.split(",")):
        name, _, rest = extra.partition("=")
        port, _, pid = rest.partition(":")
        targets.append(Target(name, int(port), int(pid)))
    procs: list[subprocess.Popen] = []
    wanted = set(filter(None, args.peers.split(",")))
    try:
        for name, starter in (
            (
                "squid",
                lambda: start_squid(args.work, args.origin_port, args.sink_port, login, secret),
            ),
            (
                "tinyproxy",
                lambda: start_tinyproxy(args.work, args.origin_port, args.sink_port, login, secret),
            ),
            ("proxy.py", lambda: start_proxypy(args.work, login, secret, sys.executable)),
        ):
            if name not in wanted:
                continue
            proc = starter()
            procs.append(proc)
            if not wait_port(proc.port):  # type: ignore[attr-defined]
                print(f"{name} did not start; skipped", file=sys.stderr)
                continue
            targets.append(Target(name, proc.port, proc.pid))  # type: ignore[attr-defined]
        # Small requests: interleaved repetitions (every target once per round), medians
        # reported, so a slow spell of the shared machine does not fall on one target.
        for t in targets:
            warm_up(t, args, small)
        rounds: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
        for rep in range(args.repeat):
            print(f"bench: small requests, round {rep + 1} of {args.repeat} ...", file=sys.stderr)
            for t in targets:
                rounds[t.name].append(small_requests(t, args, small, auth))
        for t in targets:
            t.results.update(medians(rounds[t.name]))
            run_bulk_and_idle(t, args, small, big, upload_url, auth)
            print(f"  {t.name}: {json.dumps(t.results, default=str)}", file=sys.stderr)
    finally:
        for proc in procs:
            stop(proc)
    report(targets, args)


def warm_up(t: Target, args: argparse.Namespace, small: str) -> None:
    """Caches (auth, upstream pools) filled before anything is measured."""
    subprocess.run(
        ["ab", "-q", "-n", "500", "-c", "10", "-k"]
        + (["-X", f"127.0.0.1:{t.port}", "-P", f"{args.login}:{args.secret}"] if t.port else [])
        + [small],
        capture_output=True,
        timeout=60,
    )


def small_requests(t: Target, args: argparse.Namespace, small: str, auth: str) -> dict[str, float]:
    """One round of the small-request scenarios: wrk keep-alive at c=1, 50, 500 and ab
    with a new connection per request."""
    print(f"bench: {t.name} ...", file=sys.stderr)
    r: dict[str, float] = {}
    for c in (1, 50, 500):
        w = wrk(t, small, auth, args.work, c, args.seconds)
        r[f"ka{c}_rps"], r[f"ka{c}_p50"], r[f"ka{c}_p99"] = w["rps"], w["p50"], w["p99"]
        r[f"ka{c}_err"] = w["errors"] + w["non2xx"]
        if c == 50:
            r["cpu_us_per_req"] = w["cpu_us"]
    a = ab(t, small, args.login, args.secret, args.ab_requests)
    r["new_rps"], r["new_failed"] = a["rps"], a["failed"]
    return r


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Per measure, the median over the rounds; error counts are summed instead."""
    out: dict[str, float] = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        out[key] = sum(values) if key.endswith(("_err", "_failed")) else statistics.median(values)
    return out


def run_bulk_and_idle(
    t: Target, args: argparse.Namespace, small: str, big: str, up: str, auth: str
) -> None:
    r = t.results
    login, secret = args.login, args.secret
    print(f"bench: {t.name} bulk and idle tunnels ...", file=sys.stderr)
    gib = args.big.stat().st_size / 2**30
    modes = [
        ("dl", True, None),
        ("dl", False, None),
        ("ul", True, args.big),
        ("ul", False, args.big),
    ]
    for kind, tunnel, upload in modes:
        if t.port is None and not tunnel:
            continue  # direct has one path
        key = f"{kind}_{'tunnel' if tunnel else 'http'}" if t.port else kind
        try:
            mbs, size, code, cpu = curl_bulk(
                t, big if upload is None else up, login, secret, tunnel=tunnel, upload=upload
            )
        except (subprocess.TimeoutExpired, IndexError, ValueError) as exc:
            r[key] = f"failed ({type(exc).__name__})"
            continue
        expected = args.big.stat().st_size
        ok = size == expected and code.startswith("2")
        r[key] = mbs if ok else f"failed ({size} B, HTTP {code})"
        if t.pid and ok:
            r[f"{key}_cpu_gib"] = cpu / gib
    if t.port is not None and args.idle:
        held = idle_tunnels(t, args.origin_port, auth, args.idle, deadline_s=90)
        r["idle_opened"], r["idle_kib"] = held["opened"], held["kib"]
        if held["error"]:
            r["idle_error"] = held["error"]
        w = wrk(t, small, auth, args.work, 50, args.seconds)
        r["idle_rps"], r["idle_p50"], r["idle_p99"] = w["rps"], w["p50"], w["p99"]
        for s in held["socks"]:
            s.close()
        time.sleep(2)


def report(targets: list[Target], args: argparse.Namespace) -> None:
    direct = targets[0].results
    by = {t.name: t.results for t in targets}
    peers = [t.name for t in targets[2:]]

    def ratio(a: float | str | None, b: float | str | None) -> str:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
            return f"{a / b:.2f}"
        return "n/a"

    lines = []
    lines.append(
        "| target | ka c=1 req/s | ka c=50 req/s | p50/p99 ms (c=50) | ka c=500 req/s "
        "| p50/p99 ms (c=500) | new conn req/s | CPU µs/req (c=50) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for t in targets:
        r = t.results
        errs = sum(int(r.get(f"ka{c}_err", 0)) for c in (1, 50, 500))
        lines.append(
            f"| {t.name} | {fmt(r['ka1_rps'])} | {fmt(r['ka50_rps'])} "
            f"| {fmt(r['ka50_p50'], '.2f')} / {fmt(r['ka50_p99'], '.2f')} | {fmt(r['ka500_rps'])} "
            f"| {fmt(r['ka500_p50'], '.2f')} / {fmt(r['ka500_p99'], '.2f')} "
            f"| {fmt(r['new_rps'])}{' (' + str(r['new_failed']) + ' failed)' if r['new_failed'] else ''} "
            f"| {fmt(r.get('cpu_us_per_req', float('nan')), '.0f')} |"
            + (f" ({errs} errors/non-2xx)" if errs else "")
        )
    lines.append("")
    lines.append(
        "| target | CONNECT down MB/s | CONNECT up MB/s | HTTP down MB/s | HTTP up MB/s "
        "| CPU-s/GiB tunnel down/up | CPU-s/GiB HTTP down/up |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    lines.append(f"| direct | {fmt(direct['dl'])} | {fmt(direct['ul'])} | — | — | — | — |")
    for t in targets[1:]:
        r = t.results
        lines.append(
            f"| {t.name} | {fmt(r['dl_tunnel'])} | {fmt(r['ul_tunnel'])} | {fmt(r['dl_http'])} "
            f"| {fmt(r['ul_http'])} "
            f"| {fmt(r.get('dl_tunnel_cpu_gib', 'n/a'), '.2f')} / {fmt(r.get('ul_tunnel_cpu_gib', 'n/a'), '.2f')} "
            f"| {fmt(r.get('dl_http_cpu_gib', 'n/a'), '.2f')} / {fmt(r.get('ul_http_cpu_gib', 'n/a'), '.2f')} |"
        )
    lines.append("")
    lines.append(
        "| target | idle tunnels held | RSS KiB per idle tunnel | req/s c=50 while held "
        "| p50/p99 ms while held |"
    )
    lines.append("|---|---|---|---|---|")
    for t in targets[1:]:
        r = t.results
        if "idle_opened" not in r:
            continue
        note = f" ({r['idle_error']})" if r.get("idle_error") else ""
        lines.append(
            f"| {t.name} | {r['idle_opened']}{note} | {fmt(r['idle_kib'], '.1f')} "
            f"| {fmt(r['idle_rps'])} | {fmt(r['idle_p50'], '.2f')} / {fmt(r['idle_p99'], '.2f')} |"
        )
    lines.append("")
    ours = by["goproxy"]
    lines.append("Ratios of goproxy to the direct path and to each peer (>1: goproxy is better):")
    lines.append("")
    head = "| metric | vs direct | " + " | ".join(f"vs {p}" for p in peers) + " |"
    lines.append(head)
    lines.append("|---|---|" + "---|" * len(peers))
    higher = [
        ("keep-alive c=1 req/s", "ka1_rps"),
        ("keep-alive c=50 req/s", "ka50_rps"),
        ("keep-alive c=500 req/s", "ka500_rps"),
        ("new connection req/s", "new_rps"),
        ("CONNECT download MB/s", "dl_tunnel"),
        ("CONNECT upload MB/s", "ul_tunnel"),
        ("HTTP download MB/s", "dl_http"),
        ("HTTP upload MB/s", "ul_http"),
    ]
    direct_key = {"dl_tunnel": "dl", "ul_tunnel": "ul", "dl_http": "dl", "ul_http": "ul"}
    for label, key in higher:
        row = f"| {label} | {ratio(ours.get(key), direct.get(direct_key.get(key, key)))} | "
        row += " | ".join(ratio(ours.get(key), by[p].get(key)) for p in peers) + " |"
        lines.append(row)
    lower = [
        ("p99 c=50 (peer/ours)", "ka50_p99"),
        ("p99 c=500 (peer/ours)", "ka500_p99"),
        ("CPU-s/GiB tunnel down (peer/ours)", "dl_tunnel_cpu_gib"),
        ("CPU-s/GiB tunnel up (peer/ours)", "ul_tunnel_cpu_gib"),
        ("RSS per idle tunnel (peer/ours)", "idle_kib"),
    ]
    for label, key in lower:
        row = f"| {label} | — | " + " | ".join(ratio(by[p].get(key), ours.get(key)) for p in peers)
        lines.append(row + " |")
    table = "\n".join(lines)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = (
        f"{BEGIN}\n_Last `make bench` run: {stamp}; wrk {args.seconds} s per case, "
        f"ab -n {args.ab_requests} -c 50 (small requests: medians of {args.repeat} "
        f"interleaved rounds), {args.big.stat().st_size / 2**30:.0f} GiB bulk "
        f"transfers, {args.idle} idle tunnels._\n\n{table}\n{END}"
    )
    print(table)
    text = RESULTS.read_text() if RESULTS.exists() else f"# Benchmark results\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        text = pre + block + post
    else:
        text += "\n" + block + "\n"
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
