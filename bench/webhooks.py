"""Signed webhooks on a running daemon: committed runs per second and latency, by senders.

    .venv/bin/python bench/webhooks.py [--quick] [--deliveries 2000] [--repeat 3]
                                       [--round-seconds 10] [--senders 1,16,64]
                                       [--client raw|httpx] [--profile FILE] [--verbose]

`orchestrator daemon` runs as a real child process on a fresh state directory
(`synchronous=FULL`, the default), with one DAG of one async task and a GitHub-kind webhook
(`--event push`, `--conf sha=after`) added through the control socket, as
`orchestrator webhooks add` does. The API listens on a free port (ORCHESTRATOR_API_PORT=0);
the rate limits and the queue bound are set far above what the bench sends, so every refusal
counted below is a real failure, not a limit.

For 1, 16 and 64 concurrent senders, `--deliveries` signed deliveries (each with its own
X-GitHub-Delivery id, so each must start a run) go to `POST /hooks/bench`; none starts after
`--round-seconds`, so a slow level (one sender waits for each answer) ends in bounded time.
A 201 comes back only once the run is committed, so 201s per second is committed runs per
second. The load
generator is a minimal HTTP/1.1 keep-alive client on asyncio streams, one connection per
sender, with every request's bytes (and its HMAC) made before the clock starts: it costs a
fraction of what the server does per request. `--client httpx` sends the same bytes through
`httpx.AsyncClient` instead, to see what a heavier client costs. The CPU each side used is
printed beside the rates, so a saturated client shows.

Each level runs `--repeat` rounds on the same daemon; between rounds the bench waits until
every run has finished, so a backlog of runs never slows the next round. Printed: 201s per
second, p50 and p99 latency, failures, and the daemon's store transactions and batches per
round (batches per transaction is the group commit at work). At the end: runs in the store
(read read-only) against deliveries sent. Targets: >= 1,000 committed runs/s with 16 senders and
>= 2,000/s with 64, each at p99 <= 50 ms. Nothing here asserts.

`--profile FILE` runs the daemon under cProfile (its main thread: the event loop) and writes
the profile to FILE when it stops; read it with `python -m pstats FILE`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from burst import (
    Daemon,
    connect_readonly,
    load_average,
    poll_until,
    stop_on_signals,
    verdict,
)
from idle_daemon import TICKS_PER_SECOND, process_ticks
from machine import machine  # bench/ is on the path when a script runs

HOOK = "bench"
DAG_ID = "hooked"
SECRET = "bench-secret-not-for-production"
SECRET_VARIABLE = "HOOKBENCH_SECRET"
# Committed runs per second at p99 <= 50 ms, by senders: 16 from the webhook issue, 64 from
# issue #17 (the storm: >= 2,000/s).
TARGET_RATES = {16: 1_000.0, 64: 2_000.0}
TARGET_P99_MS = 50.0
FINISHED = ("success", "failed")

DAG_FILE = """\
from orchestrator import DAG, task


@task
async def note(context) -> str:
    return context.conf["sha"]


with DAG({dag_id!r}, max_active_runs=100_000):
    note()
"""

DAEMON_SETTINGS = {
    "ORCHESTRATOR_API_PORT": "0",
    "ORCHESTRATOR_WEBHOOK_RATE": "1000000",
    "ORCHESTRATOR_DAG_TRIGGER_RATE": "1000000",
    "ORCHESTRATOR_MAX_QUEUED_RUNS": "1000000",
}

# -- the daemon -----------------------------------------------------------------------------------


class HookDaemon(Daemon):
    """`Daemon` with the API settings in its environment, optionally under cProfile.

    `Daemon.__init__` starts the process with the caller's ORCHESTRATOR_* settings removed
    and no way to add ours, so this one starts it itself and sets what the inherited
    methods (`ask`, `wait_ready`, `stop`, `log`) read.
    """

    def __init__(self, root: Path, *, profile: Path | None = None) -> None:
        self.state_dir = root / "state"
        self.dags_folder = root / "dags"
        self.log_path = root / "daemon.log"
        self.stop_timeout = 60.0
        self.stop_seconds = float("nan")
        argv = [sys.executable]
        if profile is not None:
            argv += ["-m", "cProfile", "-o", str(profile)]
        argv += ["-m", "orchestrator.cli", "daemon", "--state-dir", str(self.state_dir)]
        argv += ["--dags-folder", str(self.dags_folder), "--shutdown-grace", "5"]
        # Not the caller's ORCHESTRATOR_* settings (an orchestrator.toml in `root` is none).
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        environment = (
            inherited | DAEMON_SETTINGS | {SECRET_VARIABLE: SECRET, "PYTHONUNBUFFERED": "1"}
        )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=root, env=environment, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def add_webhook(self) -> str:
        """The webhook, as `orchestrator webhooks add` sends it; the URL deliveries go to."""
        self.ask(
            "webhooks_add",
            webhook={
                "name": HOOK,
                "dag_id": DAG_ID,
                "kind": "github",
                "secret_env": SECRET_VARIABLE,
                "filters": [["header.X-GitHub-Event", "push"]],
                "conf_map": {"sha": "after", "branch": "ref"},
            },
        )
        # The control socket answers before the API listens: wait for its address.
        api = poll_until(lambda: self.ask("ping")["api"], 30, "the API to listen", every=0.02)
        return f"{api}/hooks/{HOOK}"

    def unfinished_runs(self) -> int:
        with closing(connect_readonly(self.db_path)) as connection:
            sql = f"SELECT count(*) FROM runs WHERE state NOT IN {FINISHED}"
            return int(connection.execute(sql).fetchone()[0])


# -- the deliveries -------------------------------------------------------------------------------


def delivery(url: str, delivery_id: str) -> bytes:
    """One signed GitHub push delivery as the bytes of an HTTP/1.1 request."""
    parts = urlsplit(url)
    sha = hashlib.sha1(delivery_id.encode()).hexdigest()
    body = json.dumps(
        {"ref": "refs/heads/main", "after": sha, "repository": {"full_name": "acme/models"}}
    ).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery_id}\r\n"
        f"X-Hub-Signature-256: sha256={signature}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Tally:
    """What the senders of one round saw: a latency per answer, the answers by status, and
    the first body of each status that is not 201 (what went wrong, in the daemon's words)."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    refusals: dict[int, str] = field(default_factory=dict)

    def note(self, status: int, body: bytes, started: float) -> None:
        self.latencies.append(time.perf_counter() - started)
        self.statuses[status] += 1
        if status != 201:
            self.refusals.setdefault(status, body.decode(errors="replace")[:300])


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one response (status line, headers, a Content-Length body): status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(head[9:12]), await reader.readexactly(length)


async def raw_sender(host: str, port: int, requests: Iterator[bytes], tally: Tally) -> None:
    """One keep-alive connection sending requests until none are left.

    A connection that breaks counts as an answer with status 0 and is opened again.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            started = time.perf_counter()
            writer.write(request)
            try:
                tally.note(*await read_response(reader), started)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                tally.note(0, repr(error).encode(), started)
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def httpx_sender(client: Any, requests: Iterator[bytes], tally: Tally) -> None:
    """The same requests through httpx (headers and body split back out of the bytes)."""
    for request in requests:
        head, _, body = request.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        path = lines[0].split()[1]
        headers = dict(line.split(": ", 1) for line in lines[1:] if not line.startswith("Host"))
        started = time.perf_counter()
        answer = await client.post(path, content=body, headers=headers)
        tally.note(answer.status_code, answer.content, started)


async def send_all(
    url: str, requests: list[bytes], senders: int, client: str, seconds: float
) -> Tally:
    """`senders` concurrent senders share the requests; each takes the next one that is left.

    No request is started after `seconds`, so a slow level ends in bounded time.
    """
    tally = Tally()
    deadline = time.perf_counter() + seconds
    # One iterator: a request goes to whichever sender is free.
    shared = itertools.takewhile(lambda _: time.perf_counter() < deadline, requests)
    parts = urlsplit(url)
    if client == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
        base = f"{parts.scheme}://{parts.netloc}"
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
            await asyncio.gather(*(httpx_sender(http, shared, tally) for _ in range(senders)))
    else:
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        await asyncio.gather(*(raw_sender(host, port, shared, tally) for _ in range(senders)))
    return tally


# -- one round ------------------------------------------------------------------------------------


def one_round(
    daemon: HookDaemon, url: str, senders: int, round_id: str, options: argparse.Namespace
) -> dict[str, Any]:
    """Send one level's deliveries, then wait for their runs to finish; the round's figures."""
    requests = [delivery(url, f"{round_id}-{i}") for i in range(options.deliveries)]
    sending = send_all(url, requests, senders, options.client, options.round_seconds)
    before = Snapshot.take(daemon)
    tally = asyncio.run(sending)
    used = Snapshot.take(daemon) - before
    backlog = daemon.unfinished_runs()
    drain = time.perf_counter()
    poll_until(lambda: daemon.unfinished_runs() == 0 or None, 300, "the runs to finish", 0.05)
    whole = Snapshot.take(daemon) - before  # the runs' own work included
    return {
        "rate": tally.statuses[201] / used.wall,
        "p50_ms": 1000 * percentile(tally.latencies, 50),
        "p99_ms": 1000 * percentile(tally.latencies, 99),
        "failures": sum(n for status, n in tally.statuses.items() if status != 201),
        "statuses": dict(tally.statuses),
        "refusals": tally.refusals,
        "created": tally.statuses[201],
        "sent": len(tally.latencies),
        "transactions": used.transactions,
        "batches": used.batches,
        "daemon_cpu": 100 * used.daemon_ticks / TICKS_PER_SECOND / used.wall,
        "client_cpu": 100 * used.client_cpu / used.wall,
        "backlog": backlog,
        "drain_s": time.perf_counter() - drain,
        "cpu_per_delivery_ms": 1000
        * used.daemon_ticks
        / TICKS_PER_SECOND
        / max(len(tally.latencies), 1),
        "cpu_per_run_ms": 1000 * whole.daemon_ticks / TICKS_PER_SECOND / max(len(requests), 1),
    }


@dataclass(frozen=True)
class Snapshot:
    """The clocks and counters of both sides at one moment; a difference covers a round."""

    wall: float
    client_cpu: float  # seconds, this process
    daemon_ticks: int  # utime + stime, every thread of the daemon
    transactions: int
    batches: int

    @classmethod
    def take(cls, daemon: HookDaemon) -> Snapshot:
        status = daemon.ask("status")
        return cls(
            wall=time.perf_counter(),
            client_cpu=time.process_time(),
            daemon_ticks=process_ticks(daemon.pid),
            transactions=status["store_transactions"],
            batches=status["store_batches"],
        )

    def __sub__(self, earlier: Snapshot) -> Snapshot:
        return Snapshot(
            self.wall - earlier.wall,
            self.client_cpu - earlier.client_cpu,
            self.daemon_ticks - earlier.daemon_ticks,
            self.transactions - earlier.transactions,
            self.batches - earlier.batches,
        )


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank): p99 of 2,000 answers is the 20th slowest."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[rank - 1] if ordered else float("nan")


# -- the report -----------------------------------------------------------------------------------


def row(label: str, cells: list[str], median: str = "", target: str = "") -> None:
    print(f"  {label:<30}" + "".join(f"{c:>10}" for c in cells) + f"{median:>10}   {target}")


def figures_row(
    label: str, results: list[dict[str, Any]], key: str, unit: str, digits: int = 0
) -> float:
    values: list[float] = [r[key] for r in results]
    median = statistics.median(values)
    row(label, [f"{v:.{digits}f}{unit}" for v in values], f"{median:.{digits}f}{unit}")
    return median


def report_level(senders: int, results: list[dict[str, Any]]) -> bool:
    """One level's table; True if it meets the target (only judged at the target levels)."""
    sent = ", ".join(f"{r['sent']:,}" for r in results)
    print(f"\n{senders} sender(s), deliveries sent per round: {sent}")
    row("", [f"round {i + 1}" for i in range(len(results))], "median")
    rate = figures_row("201 Created per second", results, "rate", "/s")
    figures_row("latency p50", results, "p50_ms", " ms", 1)
    p99 = figures_row("latency p99", results, "p99_ms", " ms", 1)
    failures = [r["failures"] for r in results]
    row("failures (not 201)", [str(v) for v in failures], "", _statuses(results))
    figures_row("store transactions", results, "transactions", "")
    ratios = [r["batches"] / max(r["transactions"], 1) for r in results]
    row(
        "  batches per transaction",
        [f"{v:.1f}" for v in ratios],
        f"{statistics.median(ratios):.1f}",
    )
    figures_row("daemon CPU (% of one core)", results, "daemon_cpu", "%")
    figures_row("client CPU (% of one core)", results, "client_cpu", "%")
    figures_row("daemon CPU per delivery, sending", results, "cpu_per_delivery_ms", " ms", 3)
    figures_row("runs unfinished as sending ends", results, "backlog", "")
    figures_row("runs all finished after", results, "drain_s", " s", 2)
    figures_row("daemon CPU per run, to finished", results, "cpu_per_run_ms", " ms", 2)
    _print_refusals(results)
    if senders not in TARGET_RATES:
        return True
    target = TARGET_RATES[senders]
    ok = rate >= target and p99 <= TARGET_P99_MS and not any(failures)
    print(f"  target >= {target:,.0f}/s at p99 <= {TARGET_P99_MS:g} ms: {verdict(ok)}")
    return ok


def _statuses(results: list[dict[str, Any]]) -> str:
    counts: Counter[int] = Counter()
    for result in results:
        counts.update({int(k): v for k, v in result["statuses"].items() if int(k) != 201})
    return ", ".join(f"{n} x {s or 'broken connection'}" for s, n in sorted(counts.items()))


def _print_refusals(results: list[dict[str, Any]]) -> None:
    """The daemon's answer to the first refused delivery of each status, as it sent it."""
    refusals: dict[int, str] = {}
    for result in results:
        for status, body in result["refusals"].items():
            refusals.setdefault(status, body)
    for status, body in sorted(refusals.items()):
        print(f"  first {status or 'broken connection'} answer: {body}")


def report_store(daemon: HookDaemon, sent: int, created: int) -> None:
    """Runs and events in the store against deliveries sent, and the totals of the writer."""
    queries = {
        "runs": "SELECT count(*) FROM runs WHERE run_type = 'webhook'",
        "events": "SELECT count(*) FROM events",
        "shas": "SELECT count(DISTINCT json_extract(conf, '$.sha')) FROM runs",
        "failed": "SELECT count(*) FROM runs WHERE state != 'success'",
    }
    with closing(connect_readonly(daemon.db_path)) as connection:
        counts = {key: connection.execute(sql).fetchone()[0] for key, sql in queries.items()}
    status = daemon.ask("status")
    # A 201 is a promise that the run is committed; a refused delivery must leave nothing.
    once = counts["runs"] == counts["events"] == counts["shas"] == created
    print(f"\ndeliveries sent {sent:,}, answered 201 {created:,}; in the store (read-only):")
    print(f"  webhook runs {counts['runs']:,}, events {counts['events']:,}, distinct shas "
          f"{counts['shas']:,}: one run per 201: {verdict(once)}; "
          f"runs == deliveries sent: {verdict(counts['runs'] == sent)}")  # fmt: skip
    print(f"  runs not successful: {counts['failed']} (target 0: {verdict(not counts['failed'])})")
    transactions, batches = status["store_transactions"], status["store_batches"]
    ratio = batches / max(transactions, 1)
    print(f"  the daemon's store over its life: {transactions:,} transactions, {batches:,} "
          f"batches ({ratio:.1f} batches per transaction)")  # fmt: skip


# -- main -----------------------------------------------------------------------------------------


def run_levels(options: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="hookbench-") as folder:
        root = Path(folder)
        (root / "dags").mkdir()
        (root / "dags" / "hooked.py").write_text(DAG_FILE.format(dag_id=DAG_ID))
        daemon = HookDaemon(root, profile=options.profile)
        try:
            with daemon:
                measure(daemon, options)
        finally:
            if options.verbose:
                sys.stderr.write(daemon.log())


def measure(daemon: HookDaemon, options: argparse.Namespace) -> None:
    daemon.wait_ready()
    url = daemon.add_webhook()
    print(f"webhook: {url} (github, --event push, --conf sha=after --conf branch=ref)")
    print(f"client: {options.client}; {options.deliveries:,} deliveries per round")
    passed, sent, created = True, 0, 0
    for senders in options.senders:
        results = []
        for index in range(options.repeat):
            print(f"  ... {senders} senders, round {index + 1}", file=sys.stderr, flush=True)
            results.append(one_round(daemon, url, senders, f"s{senders}-r{index}", options))
        passed &= report_level(senders, results)
        sent += sum(r["sent"] for r in results)
        created += sum(r["created"] for r in results)
    report_store(daemon, sent, created)
    print(f"\nall targets: {verdict(passed)}")


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 deliveries, 1 round: a smoke run")
    parser.add_argument("--deliveries", type=int, help="per round (2,000; --quick: 200)")
    parser.add_argument("--repeat", type=int, help="rounds per level, median shown (3; quick: 1)")
    parser.add_argument(
        "--round-seconds", type=float, default=10.0, help="no delivery starts after this"
    )
    parser.add_argument("--senders", default="1,16,64", help="levels of concurrent senders")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--profile", type=Path, help="run the daemon under cProfile, to FILE")
    parser.add_argument("--verbose", action="store_true", help="show the daemon's log")
    options = parser.parse_args()
    options.deliveries = options.deliveries or (200 if options.quick else 2_000)
    options.repeat = options.repeat or (1 if options.quick else 3)
    options.senders = [int(part) for part in options.senders.split(",")]
    if options.profile is not None:
        options.profile = options.profile.resolve()
    return options


def main() -> None:
    options = parse_options()
    stop_on_signals()
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"load average at start: {load_average()}")
    run_levels(options)
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
