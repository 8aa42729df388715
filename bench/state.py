#!/usr/bin/python3
"""What greylisting + karma (and rate_limit) add to a session: the local store and Redis.

    /usr/bin/python3 bench/state.py              # 30 interleaved runs of each variant
    /usr/bin/python3 bench/state.py --runs 60 --json state.json

One whole session (HELO, MAIL, RCPT, DATA of a small message, QUIT) over a
socket pair, as bench/run.py measures it, for these stacks, run in turn so
that a change in machine load hits every variant alike:

* `typical`: bench/run.py's typical stack (12 plugins);
* `+grey+karma local`: the same with `greylisting` and `karma` on the local
  SQLite store (a private directory);
* `+grey+karma redis`: the same on a private redis-server (127.0.0.1, free
  port; needs redis-server and redis-py for the interpreter);
* `+grey+karma+rate_limit local`: also `rate_limit rcpt 1000/1h concurrency 50`.

The client is a known one (greylisting has it as white, as for every
client after its first delivery; karma has a nice history), so every
session passes and pays for the full round: greylisting renews the
client's entry (a write), karma reads the history at connect.  Each run is
checked (`220 250 250 250 354 250 221`, the qmail-queue double got the
message).  The figure that matters is the median wall time above the
typical stack; the target for the local store is under 3 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.join(os.path.dirname(BENCH), "lib"))

import harness  # noqa: E402
from harness import Series  # noqa: E402

EXPECTED = [220, 250, 250, 250, 354, 250, 221]
CLIENT_IP = "127.0.0.1"  # harness.base_env's TCPREMOTEIP


def with_plugins(extra: list[str]) -> list[str]:
    """The typical stack with `extra` after `relay` (before the checks, as the docs advise)."""
    stack = list(harness.TYPICAL_STACK)
    position = stack.index("relay") + 1
    return stack[:position] + extra + stack[position:]


def seed(store_args: dict[str, str]) -> None:
    """A known client: white in greylisting, a nice karma history."""
    from qpsmtpd import state

    if "redis" in store_args:
        stores = [state.RedisStore(store_args["redis"], name, 5.0) for name in ("greylist", "karma")]
    else:
        stores = [state.LocalStore(os.path.join(store_args["db_dir"], state.LOCAL_FILE), name, 5.0)
                  for name in ("greylist", "karma")]
    now = int(time.time())
    stores[0].set(CLIENT_IP, f"{now - 7200}:1:1:1", 30 * 86400)
    stores[1].set(CLIENT_IP, "0:0:5:5", 30 * 86400)
    for store in stores:
        store.close()


def start_redis(work: str) -> tuple[subprocess.Popen, int] | None:
    binary = shutil.which("redis-server", path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
    if not binary:
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = os.path.join(work, "redis")
    os.makedirs(data, exist_ok=True)
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", data, "--logfile", os.path.join(data, "redis.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()

    work = harness.make_workdir()
    redis = None
    try:
        qq_double, _kind = harness.build_qq_double(work)
        qq_log = os.path.join(work, "qq.log")
        install = harness.python_install(work)
        harness.precompile(args.python)
        meter = harness.Meter(work)
        db_dir = os.path.join(work, "state")
        os.makedirs(db_dir)
        local = f"db_dir {db_dir}"
        variants: dict[str, list[str]] = {
            "typical": list(harness.TYPICAL_STACK),
            "+grey+karma local": with_plugins([f"greylisting {local}", f"karma {local}"]),
        }
        seed({"db_dir": db_dir})
        if not args.no_redis:
            redis = start_redis(work)
            if redis is None:
                print("redis-server not found: the Redis variant is left out", file=sys.stderr)
            else:
                server = f"127.0.0.1:{redis[1]}"
                seed({"redis": server})
                variants["+grey+karma redis"] = with_plugins([f"greylisting redis {server}", f"karma redis {server}"])
        variants["+grey+karma+rate_limit local"] = with_plugins(
            [f"greylisting {local}", f"karma {local}", f"rate_limit {local} rcpt 1000000/1h concurrency 50"])

        servers = {}
        for name, plugins in variants.items():
            config = harness.write_config(os.path.join(work, "config-" + name.replace(" ", "_").replace("+", "p")),
                                          plugins)
            env = harness.base_env(work, config, qq_double, qq_log)
            servers[name] = harness.python_server(args.python, install, env)
        results = {name: {"wall": Series(), "cpu": Series(), "rss": Series()} for name in servers}
        problems: list[str] = []
        for server in servers.values():  # warm-up: bytecode, page cache, the store files
            harness.session_run(meter, server)
        for _ in range(args.runs):
            for name, server in servers.items():
                before = len(harness.read_qq_log(qq_log))
                run = harness.session_run(meter, server)
                codes = [code for code, _text in run.replies]
                if codes != EXPECTED or len(harness.read_qq_log(qq_log)) != before + 1:
                    problems.append(f"{name}: exit status {run.status}, replies {run.replies[-3:]}")
                results[name]["wall"].add(run.wall * 1000)
                results[name]["cpu"].add(run.cpu_ms)
                results[name]["rss"].add(run.maxrss_kib / 1024)
        report(results, args.runs)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump({name: {key: series.values for key, series in values.items()}
                           for name, values in results.items()}, handle, indent=1)
        for problem in problems[:10]:
            print(f"INVALID: {problem}")
        return 1 if problems else 0
    finally:
        if redis is not None:
            redis[0].terminate()
            redis[0].wait()
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, dict[str, Series]], runs: int) -> None:
    base = results["typical"]
    print(f"## state layer: one whole session (wall ms, CPU ms, peak RSS MiB: median (min–max) of {runs})")
    for name, values in results.items():
        line = (f"  {name:<30} {values['wall'].describe()} ms, CPU {values['cpu'].describe()} ms, "
                f"{values['rss'].describe()} MiB")
        if name != "typical":
            line += (f"; above typical: wall {values['wall'].median - base['wall'].median:+.2f} ms, "
                     f"CPU {values['cpu'].median - base['cpu'].median:+.2f} ms")
        print(line)


if __name__ == "__main__":
    sys.exit(main())
