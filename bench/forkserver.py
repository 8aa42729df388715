#!/usr/bin/env python3
"""Forkserver throughput: messages/s and server CPU per message, against its peers, interleaved.

    /usr/bin/python3 bench/forkserver.py                      # our two modes only
    QPSMTPD_PERL=/path/to/perl/qpsmtpd HARAKA=/path/to/node_modules/.bin/haraka \\
        /usr/bin/python3 bench/forkserver.py --messages 500   # and the Perl qpsmtpd, Haraka

For each stack (minimal: rcpt_ok + queue/qmail-queue; typical: the 12-plugin
stack of bench/run.py) and each concurrency (smtp-source -s 1, 10, 40; one
1 kB message per connection), every server gets the same load in turn,
round after round:

* `tcpserver`      — this project per connection (tcpserver -c 50 -b 200)
* `forkserver`     — this project, `qpsmtpd.py --listen` (plugins loaded once)
* `perl-fork`      — the Perl qpsmtpd's qpsmtpd-forkserver (QPSMTPD_PERL)
* `perl-prefork`   — the Perl qpsmtpd's qpsmtpd-prefork (QPSMTPD_PERL)
* `haraka`         — Haraka, one process, a comparable plugin set (HARAKA)

The queue is the C qmail-queue double of bench/harness.py (a spawn per
message, as qmail-queue in production) for every server; with
`--no-spawn` a queue that spawns nothing instead (our bench/plugins
queue_discard, Haraka's queue/discard).  Server CPU is the whole process
tree's (utime+stime of every live process plus what they reaped), read
from /proc before and after each run.  Every run is checked: smtp-source
must succeed and the double must have received every message.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

REPO = harness.REPO
TICKS = os.sysconf("SC_CLK_TCK")
HARAKA_MINIMAL = ["rcpt_to.in_host_list"]
HARAKA_TYPICAL = ["early_talker", "helo.checks", "rcpt_to.in_host_list", "headers"]  # no DNS plugins: no network here


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and every live descendant, plus what they reaped."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(name)] = fields
        children.setdefault(int(fields[1]), []).append(int(name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        fields = stats.get(pid)
        if fields:
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        todo.extend(children.get(pid, ()))
    return total / TICKS


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(512).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not answer")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = tempfile.mkdtemp(prefix="qpsmtpd-forkbench-")
        self.qq, self.qq_kind = harness.build_qq_double(self.work)
        self.qq_log = os.path.join(self.work, "qq.log")
        self.install = harness.python_install(self.work)
        harness.precompile(args.python)
        self.perl = os.environ.get("QPSMTPD_PERL")
        self.haraka = os.environ.get("HARAKA")
        self.smtp_source = shutil.which("smtp-source", path="/usr/sbin:/usr/bin:/usr/lib/postfix/sbin")
        self.tcpserver = shutil.which("tcpserver")
        self.results: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
        self.problems: list[str] = []

    # -- configs -------------------------------------------------------------
    def stack(self, name: str) -> list[str]:
        plugins = list(harness.MINIMAL_STACK if name == "minimal" else harness.TYPICAL_STACK)
        if self.args.no_spawn:
            plugins[-1] = "queue_discard"
        return plugins

    def config_dir(self, stack: str, perl: bool = False) -> str:
        directory = os.path.join(self.work, f"config-{stack}{'-perl' if perl else ''}")
        extra = {}
        if not perl:
            extra["plugin_dirs"] = [os.path.join(REPO, "bench", "plugins")]
        plugins = self.stack(stack)
        if perl:
            plugins[-1] = "queue/qmail-queue"  # the Perl qpsmtpd has no discard queue
        extra["loglevel"] = ["4"]  # production level (LOGWARN), as Haraka's log.ini level=error below
        return harness.write_config(directory, plugins, extra)

    def env(self, config_dir: str) -> dict[str, str]:
        env = harness.base_env(self.work, config_dir, self.qq, self.qq_log)
        return {key: value for key, value in env.items() if not key.startswith("TCP") and key != "PROTO"}

    # -- servers ---------------------------------------------------------------
    def start(self, kind: str, stack: str) -> tuple[subprocess.Popen, int]:
        port = free_port()
        python = self.args.python
        qpsmtpd = os.path.join(self.install, "qpsmtpd.py")
        if kind == "tcpserver":
            argv = [self.tcpserver, "-R", "-H", "-l0", "-c", "50", "-b", "200", "127.0.0.1", str(port),
                    python, qpsmtpd]
            env, cwd = self.env(self.config_dir(stack)), None
        elif kind == "forkserver":
            argv = [python, qpsmtpd, "--listen", f"127.0.0.1:{port}", "--max-children", "50",
                    "--max-from-ip", "0", "--backlog", "200"]
            env, cwd = self.env(self.config_dir(stack)), None
        elif kind == "perl-fork":
            # ./ : the Perl qpsmtpd finds its plugins beside $0; -T as its #! line says
            argv = ["perl", "-T", "./qpsmtpd-forkserver", "-l", "127.0.0.1", "-p", str(port), "-c", "50", "-m", "0",
                    "-H", "-u", _user()]
            env, cwd = self.env(self.config_dir(stack, perl=True)), self.perl
        elif kind == "perl-prefork":
            argv = ["perl", "-T", "./qpsmtpd-prefork", "--listen-address", "127.0.0.1", "--port", str(port),
                    "--children", "50", "--idle-children", "10", "--max-from-ip", "0", "--user", _user()]
            env, cwd = self.env(self.config_dir(stack, perl=True)), self.perl
        elif kind == "haraka":
            directory = self.haraka_instance(stack, port)
            argv = [self.haraka, "-c", directory]
            env, cwd = self.env(self.config_dir(stack)), directory
            env["YES_REALLY_DO_DISCARD"] = "1"  # queue/discard's switch (only used with --no-spawn)
        else:
            raise ValueError(kind)
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        wait_port(port, proc)
        return proc, port

    def haraka_instance(self, stack: str, port: int) -> str:
        directory = os.path.join(self.work, f"haraka-{stack}-{port}")
        config = os.path.join(directory, "config")
        # `haraka -i` lays out an instance with Haraka's default config files; ours then replace some
        subprocess.run([self.haraka, "-i", directory], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        plugins = list(HARAKA_MINIMAL if stack == "minimal" else HARAKA_TYPICAL)
        plugins.append("queue/discard" if self.args.no_spawn else "queue/qmail-queue")
        files = {
            "plugins": "\n".join(plugins) + "\n",
            "smtp.ini": f"[main]\nlisten=127.0.0.1:{port}\nnodes=0\n",  # nodes=0: one process, no cluster
            "host_list": "example.test\n",
            "me": "bench.example.test\n",
            "qmail-queue.path": self.qq + "\n",
            "log.ini": "[main]\nlevel=error\n",
            "mail_from.is_resolvable.ini": "[main]\nallow_mx_ip=true\nreject_no_mx=false\n",
        }
        for name, text in files.items():
            with open(os.path.join(config, name), "w") as handle:
                handle.write(text)
        return directory

    def stop(self, proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    # -- one measurement ----------------------------------------------------------
    def run_once(self, kind: str, stack: str, concurrency: int) -> None:
        proc, port = self.start(kind, stack)
        try:
            before_log = len(harness.read_qq_log(self.qq_log))
            cpu_before = tree_cpu(proc.pid)
            start = time.perf_counter()
            done = subprocess.run([self.smtp_source, "-s", str(concurrency), "-m", str(self.args.messages),
                                   "-l", "1024", "-f", harness.SENDER, "-t", harness.RECIPIENT,
                                   f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=3600)
            elapsed = time.perf_counter() - start
            deadline = time.monotonic() + 10
            expected = 0 if self.args.no_spawn and kind in ("forkserver", "tcpserver", "haraka") else self.args.messages
            while len(harness.read_qq_log(self.qq_log)) - before_log < expected and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)  # the last sessions finish and are reaped
            cpu = tree_cpu(proc.pid) - cpu_before
            delivered = len(harness.read_qq_log(self.qq_log)) - before_log
        finally:
            self.stop(proc)
        if done.returncode != 0 or done.stderr.strip() or delivered < expected:
            self.problems.append(f"{kind}/{stack}/c={concurrency}: rc={done.returncode} delivered={delivered}/"
                                 f"{expected} {done.stderr.strip()[:200]}")
            return
        self.results.setdefault((kind, stack, concurrency), []).append(
            (self.args.messages / elapsed, cpu * 1000 / self.args.messages))

    def servers(self) -> list[str]:
        kinds = ["tcpserver", "forkserver"]
        if self.perl:
            kinds += ["perl-fork", "perl-prefork"]
        if self.haraka:
            kinds.append("haraka")
        return [kind for kind in kinds if not self.args.only or kind in self.args.only]

    def run(self) -> None:
        for round_number in range(self.args.rounds):
            for stack in self.args.stacks:
                for concurrency in self.args.concurrency:
                    for kind in self.servers():
                        print(f"round {round_number + 1}: {kind} {stack} c={concurrency}", file=sys.stderr)
                        try:
                            self.run_once(kind, stack, concurrency)
                        except Exception as error:  # report, go on with the others
                            self.problems.append(f"{kind}/{stack}/c={concurrency}: {error}")

    def report(self) -> list[str]:
        lines = [f"# forkserver bench: {self.args.messages} messages of 1 kB, one per connection, "
                 f"{self.args.rounds} round(s), queue: {'none (discard)' if self.args.no_spawn else 'qmail-queue double (C)'}",
                 f"load average: {os.getloadavg()[0]:.2f}", ""]
        for stack in self.args.stacks:
            lines += [f"## {stack} stack", "", "| server | c | messages/s | CPU ms/msg | msg/s vs tcpserver |",
                      "| --- | --- | --- | --- | --- |"]
            for concurrency in self.args.concurrency:
                base = self._median(("tcpserver", stack, concurrency), 0)
                for kind in self.servers():
                    rate = self._median((kind, stack, concurrency), 0)
                    cpu = self._median((kind, stack, concurrency), 1)
                    if rate is None:
                        lines.append(f"| {kind} | {concurrency} | FAILED | | |")
                        continue
                    versus = f"{rate / base:.2f}x" if base else "—"
                    lines.append(f"| {kind} | {concurrency} | {rate:.0f} | {cpu:.2f} | {versus} |")
            lines.append("")
        if self.problems:
            lines += ["## problems", *self.problems]
        return lines

    def _median(self, key: tuple[str, str, int], index: int) -> float | None:
        values = sorted(entry[index] for entry in self.results.get(key, []))
        return values[len(values) // 2] if values else None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=lambda text: [int(part) for part in text.split(",")],
                        default=[1, 10, 40])
    parser.add_argument("--stacks", type=lambda text: text.split(","), default=["minimal", "typical"])
    parser.add_argument("--only", action="append", help="run only this server (repeatable)")
    parser.add_argument("--no-spawn", action="store_true", help="a queue that spawns nothing")
    parser.add_argument("--python", default="/usr/bin/python3")
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    if not (bench.smtp_source and bench.tcpserver):
        print("needs smtp-source (postfix) and tcpserver (ucspi-tcp)", file=sys.stderr)
        return 2
    try:
        bench.run()
        print("\n".join(bench.report()))
    finally:
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
    return 1 if bench.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
