#!/usr/bin/python3
"""Benchmark: what each way of importing dnspython (and pyspf) costs a fresh process.

    /opt/qpsmtpd-test-venv/bin/python3 bench/dns_imports.py [--runs N]

Run it with an interpreter that has dnspython and pyspf (the test venv).
Every variant runs in a new interpreter (`python3 -c CODE`, started by the
C launcher of harness.py); the figures are the median wall time and peak
RSS of --runs starts, the variants taking turns, and the wall time above
`python3 -c pass`.  The variants are the steps docs/dns.md walks through,
from `import dns.resolver` down to what qpsmtpd.dns does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

ROOT = os.path.dirname(HERE)
FEATURES_STAND_IN = ("import sys, types; f = types.ModuleType('dns._features'); f.have = lambda x: False; "
                     "sys.modules['dns._features'] = f; import dns; dns._features = f; ")
LEAN = f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'lib')!r}); import qpsmtpd.dns as d; d.load_dnspython(); "
LOAD_SPF = ("import importlib.util as u; "
            f"s = u.spec_from_file_location('spf_plugin', {os.path.join(ROOT, 'plugins', 'sender_permitted_from.py')!r}); "
            "p = u.module_from_spec(s); s.loader.exec_module(p); p.load_spf()")

VARIANTS = [
    ("python3 -c pass", "pass"),
    ("import dns.resolver", "import dns.resolver"),
    ("import dns.message", "import dns.message"),
    ("dns._features stand-in + dns.message", FEATURES_STAND_IN + "import dns.message"),
    ("qpsmtpd.dns.load_dnspython() (dns.name only)", LEAN),
    ("  + pyspf, plain import", LEAN + "import spf"),
    ("  + pyspf with stand-ins (load_spf)", LEAN + LOAD_SPF),
]


def measure(meter: harness.Meter, code: str) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(meter.argv([sys.executable, "-c", code]), stdin=subprocess.DEVNULL)
    status, rss_kib, _cpu = meter.collect(proc)
    wall = (time.perf_counter() - start) * 1000
    if status != 0:
        raise SystemExit(f"failed ({status}): {code}")
    return wall, rss_kib / 1024


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    meter = harness.Meter(harness.make_workdir())
    walls = {name: harness.Series() for name, _code in VARIANTS}
    rss = {name: harness.Series() for name, _code in VARIANTS}
    for _ in range(args.runs):
        for name, code in VARIANTS:
            wall, peak = measure(meter, code)
            walls[name].add(wall)
            rss[name].add(peak)
    floor = walls[VARIANTS[0][0]].median
    print(f"{sys.executable}, {args.runs} runs each, median; measured with {meter.kind}")
    print(f"{'variant':46} {'wall ms':>8} {'above pass':>11} {'peak RSS MiB':>13}")
    for name, _code in VARIANTS:
        wall = walls[name].median
        print(f"{name:46} {wall:8.1f} {wall - floor:11.1f} {rss[name].median:13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
