#!/usr/bin/python3
"""Benchmark: one session through the DNS plugin stack, against a private dnsmasq.

    /opt/qpsmtpd-test-venv/bin/python3 bench/dns_stack.py [--runs N]
    QPSMTPD_PERL=/path/to/perl/qpsmtpd-checkout /opt/qpsmtpd-test-venv/bin/python3 bench/dns_stack.py

Run it with an interpreter that has dnspython and pyspf (the test venv that
.ci/run makes, or any venv with requirements-test.txt): the server runs
with the same interpreter.

The stack: `dnsbl` (3 zones), `rhsbl`, `fcrdns`, `resolvable_fromhost`,
`helo policy strict`, `sender_permitted_from reject 3`, `rcpt_ok`,
`queue/qmail-queue`.  The client is 192.0.2.1 = client.test (PTR and A
agree, MX, SPF pass, listed nowhere), so every check runs to the end and
the message is queued.  The session (HELO, MAIL, RCPT, DATA, QUIT) runs
over a socket pair, started the way bench/run.py starts servers; wall time,
CPU time and peak RSS are the median of --runs runs (CPU time is the
steadier figure on a busy machine); with two servers they take turns.  With QPSMTPD_PERL set, the
Perl qpsmtpd runs the same session with the same config; Net::DNS is
pointed at dnsmasq with RES_NAMESERVERS / RES_OPTIONS=port:N.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "t")]

import harness  # noqa: E402
from components import dnsmasq  # noqa: E402

STACK = [
    "dnsbl", "rhsbl", "fcrdns", "resolvable_fromhost", "helo policy strict",
    "sender_permitted_from reject 3", "rcpt_ok", "queue/qmail-queue",
]
ZONE = [
    "host-record=client.test,192.0.2.1",
    "mx-host=client.test,client.test,10",
    'txt-record=client.test,"v=spf1 ip4:192.0.2.0/24 -all"',
    "address=/2.0.0.127.bl1.test/127.0.0.2",
    "address=/2.0.0.127.bl2.test/127.0.0.2",
    "address=/2.0.0.127.bl3.test/127.0.0.2",
]
CONFIG = {
    "dnsbl_zones": ["bl1.test", "bl2.test", "bl3.test"],
    "rhsbl_zones": ["rhs.test"],
}


def run(servers: dict[str, harness.Server], meter: harness.Meter,
        runs: int) -> dict[str, tuple[harness.Series, ...]]:
    """`runs` sessions per server, the servers taking turns, so that a change
    in the machine's load affects them alike."""
    results = {name: (harness.Series(), harness.Series(), harness.Series()) for name in servers}
    for _ in range(runs):
        for name, server in servers.items():
            result = harness.session_run(meter, server)
            codes = [code for code, _text in result.replies]
            if codes != [220, 250, 250, 250, 354, 250, 221]:
                raise SystemExit(f"{name}: unexpected replies {result.replies}")
            wall, rss, cpu = results[name]
            wall.add(result.wall * 1000)
            rss.add(result.maxrss_kib / 1024)
            cpu.add(result.cpu_ms)
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    work = harness.make_workdir()
    qq_double, _kind = harness.build_qq_double(work)
    meter = harness.Meter(work)
    harness.precompile(sys.executable)
    with dnsmasq(ZONE) as server:
        address = f"127.0.0.1:{server.port}"
        config = harness.write_config(os.path.join(work, "config"), STACK,
                                      {**CONFIG, "dns_servers": [address]})
        env = harness.base_env(work, config, qq_double, os.path.join(work, "qq.log"))
        env["TCPREMOTEIP"] = "192.0.2.1"
        install = harness.python_install(work)
        servers = {"python": harness.python_server(sys.executable, install, env)}
        perl = os.environ.get("QPSMTPD_PERL")
        if perl:
            perl_env = {**env, "RES_NAMESERVERS": "127.0.0.1", "RES_OPTIONS": f"port:{server.port}"}
            perl_dir = perl if os.path.isdir(perl) else os.path.dirname(perl)  # the checkout, or its script
            servers["perl"] = harness.perl_server(perl_dir, perl_env)
        results = run(servers, meter, args.runs)
    print(f"DNS stack session, {args.runs} runs, median (min-max); measured with {meter.kind}")
    for name, (wall, rss, cpu) in results.items():
        print(f"  {name:6} wall {wall.describe()} ms   CPU {cpu.describe()} ms   peak RSS {rss.describe()} MiB")
    if "perl" in results:
        print(f"  speed-up: wall {results['perl'][0].median / results['python'][0].median:.2f}x, "
              f"CPU {results['perl'][2].median / results['python'][2].median:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
