#!/usr/bin/python3
"""Benchmarks of qpsmtpd for Python, each figure a ratio to a floor measured in the same run.

    /usr/bin/python3 bench/run.py            # the full run (about 10 minutes with Perl)
    /usr/bin/python3 bench/run.py --quick    # fewer/smaller runs, still 10 of each
    QPSMTPD_PERL=/path/to/perl/qpsmtpd /usr/bin/python3 bench/run.py   # and compare with Perl
    /usr/bin/python3 bench/run.py --self-check   # checks the harness and the doubles, no timing

What is measured (median of --runs runs, with min–max):

1. `session`: one whole session (HELO, MAIL, RCPT, DATA of a small message,
   QUIT) over a socket pair, minimal stack (`rcpt_ok`, `queue/qmail-queue`)
   and typical stack: wall time and peak RSS, against `python3 -c pass`
   started the same way with the same interpreter.
2. `throughput`: tcpserver -c 20 and Postfix's `smtp-source -s 10 -m 500`,
   messages/s, against a trivial SMTP responder (bench/floor_smtpd.py).
3. `bigdata`: a 20 MB and a 100 MB message through DATA to qmail-queue and
   (as root, with Postfix installed) to a private Postfix qmqpd via
   `queue/qmqp-forward`: MB/s and peak RSS, against copying the same bytes
   straight into the qmail-queue double.
4. With QPSMTPD_PERL set, the Perl qpsmtpd runs 1-3 with the same config
   (it has no QMQP queue plugin) and the speed-up ratios are printed.

queue/qmail-queue runs a qmail-queue double compiled at bench time (C, or
/bin/sh without a compiler) that reads fd 0 and fd 1 to EOF and logs the
sizes; every run is checked (250 after DATA, the double got the message),
and a run that fails the check makes the whole figure INVALID.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness
from harness import Run, Series, Server

EXPECTED_CODES = [220, 250, 250, 250, 354, 250, 221]
MB = 1_000_000


class Bench:
    """One benchmark run: set-up shared by every section, and the results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.python = args.python
        self.perl_dir = os.environ.get("QPSMTPD_PERL") or None
        self.work = harness.make_workdir()
        self.qq_double, self.qq_kind = harness.build_qq_double(self.work)
        self.qq_log = os.path.join(self.work, "qq.log")
        self.install = harness.python_install(self.work, args.tree)
        self.meter = harness.Meter(self.work)
        self.results: dict[str, dict] = {}
        self.problems: list[str] = []
        self._qmqp_context = None

    def close(self) -> None:
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def progress(self, text: str) -> None:
        if not self.args.self_check:
            sys.stderr.write(f"  {text} (load {os.getloadavg()[0]:.1f})\n")

    # -- servers ------------------------------------------------------------
    def servers(self, name: str, plugins: list[str], extra: dict[str, list[str]] | None = None,
                perl: bool = True) -> list[Server]:
        config = harness.write_config(os.path.join(self.work, "config-" + name), plugins, extra)
        env = harness.base_env(self.work, config, self.qq_double, self.qq_log)
        servers = [harness.python_server(self.python, self.install, env, self.args.python_flag)]
        if perl and self.perl_dir:
            servers.append(harness.perl_server(self.perl_dir, env))
        return servers

    def missing_plugins(self, plugins: list[str]) -> list[str]:
        missing = []
        for line in plugins:
            name = line.split()[0]
            base = os.path.join(self.args.tree, "plugins", name)
            if not (os.path.isfile(base) or os.path.isfile(base + ".py")):
                missing.append(name)
        return missing

    def queued_count(self) -> int:
        return len(harness.read_qq_log(self.qq_log))

    def check_session(self, what: str, run: Run, queued_before: int, body_size: int = 0) -> bool:
        codes = [code for code, _text in run.replies]
        entries = harness.read_qq_log(self.qq_log)[queued_before:]
        problem = ""
        if codes != EXPECTED_CODES:
            problem = f"replies {codes}: {run.replies[-2:] if len(run.replies) > 1 else run.replies}"
        elif len(entries) != 1 or not entries[0][2]:
            problem = f"the qmail-queue double got {entries} (one well-formed message expected)"
        elif body_size and entries[0][0] < body_size * 77 // 78 - 1000:  # stored with LF line ends
            problem = f"the double got {entries[0][0]} bytes of a {body_size}-byte message"
        if problem:
            self.problems.append(f"{what}: {problem}")
            return False
        return True

    # -- 1. one whole session ----------------------------------------------
    def section_session(self) -> None:
        floor_argv = [self.python, "-c", "pass"]
        for stack_name, plugins in (("minimal", harness.MINIMAL_STACK), ("typical", harness.TYPICAL_STACK)):
            missing = self.missing_plugins(plugins)
            if missing:
                self.problems.append(f"session/{stack_name}: plugins missing: {', '.join(missing)}")
                continue
            servers = self.servers(stack_name, plugins)
            floor = {"wall": Series(), "rss": Series(), "cpu": Series()}
            measured = {server.name: {"wall": Series(), "rss": Series(), "cpu": Series(), "valid": True}
                        for server in servers}
            for server in servers:  # warm-up: bytecode, page cache
                harness.session_run(self.meter, server)
            for _ in range(self.args.session_runs):
                run = harness.floor_run(self.meter, servers[0], floor_argv)
                floor["wall"].add(run.wall * 1000)
                floor["rss"].add(run.maxrss_kib / 1024)
                floor["cpu"].add(run.cpu_ms)
                for server in servers:
                    before = self.queued_count()
                    run = harness.session_run(self.meter, server)
                    if not self.check_session(f"session/{stack_name}/{server.name}", run, before):
                        measured[server.name]["valid"] = False
                    measured[server.name]["wall"].add(run.wall * 1000)
                    measured[server.name]["rss"].add(run.maxrss_kib / 1024)
                    measured[server.name]["cpu"].add(run.cpu_ms)
            self.results[f"session/{stack_name}"] = {"floor": floor, **measured}

    # -- 2. throughput under tcpserver -------------------------------------------
    def section_throughput(self) -> None:
        smtp_source = shutil.which("smtp-source", path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/lib/postfix/sbin")
        tcpserver = shutil.which("tcpserver")
        if not smtp_source or not tcpserver:
            self.problems.append("throughput: needs smtp-source (Postfix) and tcpserver (ucspi-tcp)")
            return
        missing = self.missing_plugins(harness.MINIMAL_STACK)
        if missing:
            self.problems.append(f"throughput: plugins missing: {', '.join(missing)}")
            return
        servers = self.servers("throughput", harness.MINIMAL_STACK)
        floor_server = Server("floor", [self.python, os.path.join(harness.REPO, "bench", "floor_smtpd.py")],
                              servers[0].env)
        messages = self.args.messages
        everyone = [floor_server, *servers]
        results = {("floor" if server is floor_server else server.name): {"rate": Series(), "valid": True}
                   for server in everyone}
        for number in range(self.args.runs):  # interleaved, so that a change in load hits every server alike
            self.progress(f"throughput run {number + 1}/{self.args.runs}")
            for server in everyone:
                name = "floor" if server is floor_server else server.name
                before = self.queued_count()
                rate, ok = self.throughput_once(tcpserver, smtp_source, server, messages)
                results[name]["rate"].add(rate)
                got = self.queued_count() - before
                if server is not floor_server and got != messages:
                    ok = False
                    self.problems.append(f"throughput/{name}: {got} of {messages} messages queued")
                results[name]["valid"] = results[name]["valid"] and ok
        self.results["throughput"] = results

    def throughput_once(self, tcpserver: str, smtp_source: str, server: Server, messages: int) -> tuple[float, bool]:
        env = {key: value for key, value in server.env.items() if not key.startswith("TCP") and key != "PROTO"}
        proc = subprocess.Popen([tcpserver, "-R", "-H", "-l0", "-1", "-c", "20", "127.0.0.1", "0", *server.argv],
                                env=env, cwd=server.cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            port = int(proc.stdout.readline())
            start = time.perf_counter()
            result = subprocess.run([smtp_source, "-s", "10", "-m", str(messages), "-f", harness.SENDER,
                                     "-t", harness.RECIPIENT, f"127.0.0.1:{port}"],
                                    capture_output=True, text=True, timeout=3600, check=False)
            elapsed = time.perf_counter() - start
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
        ok = result.returncode == 0 and not result.stderr.strip()
        if not ok:
            self.problems.append(f"throughput/{server.name}: smtp-source: {result.stderr.strip()[:200]}")
        time.sleep(0.2)  # let the last children finish their queue runs
        return messages / elapsed, ok

    # -- 3. big messages -----------------------------------------------------------
    def section_bigdata(self) -> None:
        sizes = [20 * MB] if self.args.quick else [20 * MB, 100 * MB]
        backends = [("qmail-queue", harness.MINIMAL_STACK, None)]
        qmqp = self.start_qmqp()
        if qmqp is not None:
            backends.append(("qmqp", ["rcpt_ok", f"queue/qmqp-forward 127.0.0.1 {qmqp.qmqp_port}"], qmqp))
        try:
            for size in sizes:
                for backend, plugins, daemon in backends:
                    missing = self.missing_plugins(plugins)
                    if missing:
                        self.problems.append(f"bigdata/{backend}: plugins missing: {', '.join(missing)}")
                        continue
                    servers = self.servers("big-" + backend, plugins, perl=backend == "qmail-queue")
                    self.results[f"bigdata/{size // MB}MB/{backend}"] = self.bigdata(servers, backend, size, daemon)
        finally:
            if qmqp is not None:
                self._qmqp_context.__exit__(None, None, None)

    def bigdata(self, servers: list[Server], backend: str, size: int, daemon) -> dict:
        """Interleaved runs of the floor and of each server, one message of `size` bytes each."""
        floor = Series()
        entry: dict[str, dict] = {"floor": {"rate": floor}}
        for server in servers:
            entry[server.name] = {"rate": Series(), "rss": Series(), "valid": True}
        for number in range(self.args.runs):
            self.progress(f"bigdata {size // MB} MB {backend} run {number + 1}/{self.args.runs}")
            floor.add(size / MB / harness.raw_copy_run(self.qq_double, size, servers[0].env))
            for server in servers:
                item = entry[server.name]
                before = self.queued_count()
                run = harness.session_run(self.meter, server, body_size=size)
                what = f"bigdata/{size // MB}MB/{backend}/{server.name}"
                if backend == "qmail-queue":
                    item["valid"] = self.check_session(what, run, before, body_size=size) and item["valid"]
                else:
                    codes = [code for code, _ in run.replies]
                    if codes != EXPECTED_CODES:
                        item["valid"] = False
                        self.problems.append(f"{what}: replies {run.replies[-2:]}")
                    daemon.clear_queue()
                item["rate"].add(size / MB / run.data_seconds if run.data_seconds else 0.0)
                item["rss"].add(run.maxrss_kib / 1024)
        return entry

    def start_qmqp(self):
        """A private Postfix qmqpd (root + Postfix needed), via t/components.py."""
        if os.geteuid() != 0 or self.args.no_qmqp:
            if not self.args.no_qmqp:
                self.problems.append("bigdata/qmqp: needs root for a private Postfix (skipped)")
            return None
        sys.path.insert(0, os.path.join(harness.REPO, "t"))
        import components

        try:
            context = components.postfix_private(mode="hold", qmqp=True, smtpd=False)
            daemon = context.__enter__()
        except (components.ComponentError, OSError, subprocess.SubprocessError) as error:  # no Postfix
            self.problems.append(f"bigdata/qmqp: no private Postfix: {error}")
            return None
        postconf = components.find_binary("postconf")
        subprocess.run([postconf, "-c", str(daemon.conf_dir), "-e", "message_size_limit=0", "queue_minfree=0"],
                       check=True)
        os.kill(daemon.pid, signal.SIGHUP)  # the master re-reads main.cf; idle qmqpd processes exit
        time.sleep(0.5)
        self._qmqp_context = context
        return daemon

    # -- self-check ------------------------------------------------------------------
    def self_check(self) -> int:
        """No timing: the doubles and the harness work end to end."""
        failures = []
        env = self.servers("selfcheck", harness.MINIMAL_STACK, perl=False)[0].env
        run = harness.floor_run(self.meter, Server("floor", [], env), [self.python, "-c", "pass"])
        if run.status != 0 or run.maxrss_kib <= 0:
            failures.append(f"floor run: status {run.status}, maxrss {run.maxrss_kib}")
        before = self.queued_count()
        harness.raw_copy_run(self.qq_double, 1 * MB, env)
        if self.queued_count() != before:
            failures.append("the raw copy floor must not log to the queue log")
        for stack_name, plugins in (("minimal", harness.MINIMAL_STACK), ("typical", harness.TYPICAL_STACK)):
            missing = self.missing_plugins(plugins)
            if missing:
                failures.append(f"{stack_name} stack: plugins missing: {', '.join(missing)}")
                continue
            for server in self.servers("check-" + stack_name, plugins):
                before = self.queued_count()
                run = harness.session_run(self.meter, server)
                if not self.check_session(f"{stack_name}/{server.name}", run, before):
                    failures.append(self.problems[-1])
                before = self.queued_count()
                run = harness.session_run(self.meter, server, body_size=2 * MB)
                if not self.check_session(f"{stack_name}/{server.name} 2 MB", run, before, body_size=2 * MB):
                    failures.append(self.problems[-1])
        print(f"qmail-queue double: {self.qq_kind} ({self.qq_double})")
        for failure in failures:
            print("FAIL", failure)
        print("self-check", "failed" if failures else "ok")
        return 1 if failures else 0


# -- report ------------------------------------------------------------------------
def machine() -> dict[str, str]:
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    perl = subprocess.run(["perl", "-e", "print $^V"], capture_output=True, text=True, check=False).stdout if shutil.which("perl") else ""
    return {"nproc": str(os.cpu_count()), "cpu": model, "kernel": platform.release(),
            "python": f"{sys.executable} {platform.python_version()}", "perl": perl,
            "loadavg": " ".join(f"{load:.2f}" for load in os.getloadavg())}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3g}x" if b else "n/a"


def report(bench: Bench) -> list[str]:
    lines = []
    results = bench.results
    for key, entry in results.items():
        if key.startswith("session/"):
            floor = entry["floor"]
            lines.append(f"## {key}  (wall ms, CPU ms, peak RSS MiB: median (min–max) of {len(floor['wall'].values)})")
            lines.append(f"  floor python3 -c pass: {floor['wall'].describe()} ms, CPU {floor['cpu'].describe()} ms,"
                         f" {floor['rss'].describe()} MiB")
            for name in ("python", "perl"):
                if name in entry:
                    item = entry[name]
                    flag = "" if item["valid"] else "  INVALID"
                    lines.append(f"  {name:6}: {item['wall'].describe()} ms = {ratio(item['wall'].median, floor['wall'].median)}"
                                 f" floor, CPU {item['cpu'].describe()} ms = {ratio(item['cpu'].median, floor['cpu'].median)}"
                                 f" floor, {item['rss'].describe()} MiB{flag}")
            if "perl" in entry:
                lines.append(f"  speed-up python vs perl: wall {ratio(entry['perl']['wall'].median, entry['python']['wall'].median)},"
                             f" CPU {ratio(entry['perl']['cpu'].median, entry['python']['cpu'].median)}")
        elif key == "throughput":
            lines.append(f"## throughput (messages/s, tcpserver -c 20, smtp-source -s 10 -m {bench.args.messages})")
            floor = entry["floor"]["rate"]
            lines.append(f"  floor (floor_smtpd.py): {floor.describe()}")
            for name in ("python", "perl"):
                if name in entry:
                    item = entry[name]
                    flag = "" if item["valid"] else "  INVALID"
                    lines.append(f"  {name:6}: {item['rate'].describe()} = {ratio(item['rate'].median, floor.median)} floor{flag}")
            if "perl" in entry:
                lines.append(f"  speed-up python vs perl: {ratio(entry['python']['rate'].median, entry['perl']['rate'].median)}")
        elif key.startswith("bigdata/"):
            floor = entry["floor"]["rate"]
            lines.append(f"## {key}  (DATA MB/s, peak RSS MiB)")
            lines.append(f"  floor (same bytes straight into the double): {floor.describe()} MB/s")
            for name in ("python", "perl"):
                if name in entry:
                    item = entry[name]
                    flag = "" if item["valid"] else "  INVALID"
                    lines.append(f"  {name:6}: {item['rate'].describe()} MB/s = {ratio(item['rate'].median, floor.median)}"
                                 f" floor, {item['rss'].describe()} MiB{flag}")
            if "perl" in entry:
                lines.append(f"  speed-up python vs perl: {ratio(entry['python']['rate'].median, entry['perl']['rate'].median)}")
    return lines


def as_json(bench: Bench) -> dict:
    def convert(value):
        if isinstance(value, Series):
            return {"median": value.median, "min": min(value.values, default=None),
                    "max": max(value.values, default=None), "values": value.values}
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        return value
    return {"machine": machine(), "args": vars(bench.args), "results": convert(bench.results),
            "problems": bench.problems, "qq_double": bench.qq_kind}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller throughput and DATA runs (20 MB only)")
    parser.add_argument("--self-check", action="store_true", help="check the harness and the doubles, no timing")
    parser.add_argument("--runs", type=int, default=None,
                        help="runs per figure (default: 30 for sessions, 10 for the rest; 10 at least is advised)")
    parser.add_argument("--messages", type=int, default=None, help="smtp-source -m (default 500, --quick 50)")
    parser.add_argument("--only", action="append", choices=["session", "throughput", "bigdata"],
                        help="run only this section (may be repeated)")
    parser.add_argument("--python", default=sys.executable, help="interpreter to start qpsmtpd.py with (absolute)")
    parser.add_argument("--python-flag", action="append", default=[],
                        help="interpreter option for qpsmtpd.py, e.g. -S (repeatable; the floor stays `python3 -c pass`)")
    parser.add_argument("--tree", default=harness.REPO,
                        help="the qpsmtpd tree to measure (qpsmtpd.py, lib/, plugins/; default: this checkout)")
    parser.add_argument("--no-qmqp", action="store_true", help="skip the QMQP backend")
    parser.add_argument("--json", help="write the results as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    args.session_runs = args.runs or 30
    args.runs = args.runs or 10
    args.messages = args.messages or (50 if args.quick else 500)
    if not os.path.isabs(args.python):
        parser.error("--python must be an absolute path (a version-manager shim adds ~100 ms per start)")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not args.self_check:
        harness.precompile(args.python, args.tree)
    bench = Bench(args)
    try:
        if args.self_check:
            return bench.self_check()
        print("machine:", json.dumps(machine()))
        print(f"measured with: {bench.meter.kind}")
        print(f"qmail-queue double: {bench.qq_kind}; perl: {bench.perl_dir or 'not set (QPSMTPD_PERL)'}")
        sections = args.only or ["session", "throughput", "bigdata"]
        for section in sections:
            started = time.perf_counter()
            getattr(bench, "section_" + section)()
            print(f"# {section} done in {time.perf_counter() - started:.0f} s;"
                  f" load average now {os.getloadavg()[0]:.2f}", flush=True)
        print("\n".join(report(bench)))
        for problem in bench.problems:
            print("PROBLEM:", problem)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(as_json(bench), handle, indent=1)
        return 1 if any("INVALID" in line for line in report(bench)) else 0
    finally:
        bench.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
