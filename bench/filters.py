#!/usr/bin/python3
"""Benchmark: a session through `milter` to opendkim and through `rspamd`; big messages through both.

    /usr/bin/python3 bench/filters.py [--runs N] [--big-mb 1,50]

Needs opendkim, opendkim-tools and rspamd (Debian packages, .ci/packages.d/filters.txt);
the daemons are started with the private configs of t/components_filters.py
(opendkim signs for the sender's domain; rspamd without Redis or network).

For each filter it measures, interleaved, `--runs` times (median, min-max):

* `base`: a session (HELO, MAIL, RCPT, DATA of a small message, QUIT) with
  `rcpt_ok` and `queue/qmail-queue` only;
* `with filter`: the same with `milter dkim ...` or `rspamd ...` in front;
* `daemon alone`: the same conversation with the daemon sent from a minimal
  client in this process (pre-encoded milter packets / one pre-built HTTP
  request, replies read and not parsed) — the daemon's own time per message.

"our time on top" = with filter − base − daemon alone (wall), and the CPU
time the filter adds to the qpsmtpd process (with filter − base, CPU of
that process only: the daemon's CPU is not in it).

Then a message of each `--big-mb` size goes through each filter once:
peak RSS of the qpsmtpd process (flat means the message is streamed, not
held) and the time from the first body byte to the reply after the dot.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "t"), os.path.join(os.path.dirname(HERE), "lib")]

import harness
from components_filters import opendkim, rspamd

OK_CODES = [220, 250, 250, 250, 354, 250, 221]


# -- the daemon alone --------------------------------------------------------------
def _packet(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + command + data


def _read_packet(sock: socket.socket) -> bytes:
    head = _recv(sock, 4)
    return _recv(sock, struct.unpack("!I", head)[0])


def _recv(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("daemon closed the connection")
        data += chunk
    return data


def milter_steps(message: bytes) -> list[bytes]:
    """The packets of one session as our client sends them, each step waiting for its answer."""
    head, _sep, body = message.partition(b"\r\n\r\n")
    headers = [b"Received: from client.test (127.0.0.1)\r\n by bench.example.test; Thu, 1 Jan 2026 00:00:00 +0000"]
    headers += head.split(b"\r\n")
    steps = [_packet(b"O", struct.pack("!III", 6, 0x1FF, 0x1FFFFF & ~0x800)),
             _packet(b"C", b"client.test\x004" + struct.pack("!H", 40000) + b"127.0.0.1\0"),
             _packet(b"H", b"client.test\0"),
             _packet(b"M", f"<{harness.SENDER}>\0".encode()),
             _packet(b"R", f"<{harness.RECIPIENT}>\0".encode()),
             _packet(b"T")]
    for line in headers:
        name, _colon, value = line.partition(b":")
        steps.append(_packet(b"L", name + b"\0" + value.strip() + b"\0"))
    steps += [_packet(b"N"), _packet(b"B", body), _packet(b"E")]
    return steps


def milter_alone(address: tuple[str, int], steps: list[bytes]) -> float:
    """Seconds for one whole milter conversation from a client that does nothing else."""
    start = time.perf_counter()
    with socket.create_connection(address) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for step in steps:
            sock.sendall(step)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)  # as our client does
            reply = _read_packet(sock)
            if step[4:5] == b"E":
                while reply[:1] not in (b"a", b"c", b"r", b"t", b"d", b"y"):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                    reply = _read_packet(sock)
        sock.sendall(_packet(b"Q"))
    return time.perf_counter() - start


def rspamd_alone(port: int, message: bytes) -> float:
    request = (f"POST /checkv2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(message)}\r\n"
               f"Connection: close\r\nIP: 127.0.0.1\r\nHelo: client.test\r\nFrom: {harness.SENDER}\r\n"
               f"Rcpt: {harness.RECIPIENT}\r\n\r\n").encode() + message
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        while sock.recv(65536):
            pass
    return time.perf_counter() - start


# -- sessions --------------------------------------------------------------------------
def server_for(work: str, name: str, plugins: list[str], extra: dict[str, list[str]] | None,
               qq_double: str) -> harness.Server:
    config = harness.write_config(os.path.join(work, f"config-{name}"), plugins, extra)
    env = harness.base_env(work, config, qq_double, os.path.join(work, f"qq-{name}.log"))
    return harness.python_server(harness.PYTHON if hasattr(harness, "PYTHON") else "/usr/bin/python3",
                                 harness.python_install(work), env)


def session(meter: harness.Meter, server: harness.Server, **kwargs: int) -> harness.Run:
    result = harness.session_run(meter, server, **kwargs)
    codes = [code for code, _text in result.replies]
    if codes != OK_CODES:
        raise SystemExit(f"{server.argv}: unexpected replies {result.replies}")
    return result


def measure(meter: harness.Meter, base: harness.Server, filtered: harness.Server, alone, runs: int) -> dict:
    series = {key: harness.Series() for key in ("base", "filter", "alone", "base_cpu", "filter_cpu",
                                                "base_rss", "filter_rss")}
    for _ in range(runs):
        plain = session(meter, base)
        with_filter = session(meter, filtered)
        series["base"].add(plain.wall * 1000)
        series["filter"].add(with_filter.wall * 1000)
        series["base_cpu"].add(plain.cpu_ms)
        series["filter_cpu"].add(with_filter.cpu_ms)
        series["base_rss"].add(plain.maxrss_kib / 1024)
        series["filter_rss"].add(with_filter.maxrss_kib / 1024)
        series["alone"].add(alone() * 1000)
    return series


def report(title: str, series: dict) -> None:
    on_top = series["filter"].median - series["base"].median - series["alone"].median
    cpu = series["filter_cpu"].median - series["base_cpu"].median
    print(f"## {title}")
    print(f"  base session      : {series['base'].describe()} ms wall, CPU {series['base_cpu'].describe()} ms, "
          f"{series['base_rss'].describe()} MiB")
    print(f"  with the filter   : {series['filter'].describe()} ms wall, CPU {series['filter_cpu'].describe()} ms, "
          f"{series['filter_rss'].describe()} MiB")
    print(f"  daemon alone      : {series['alone'].describe()} ms per message")
    print(f"  our time on top   : {on_top:.1f} ms wall per message; CPU added to qpsmtpd {cpu:.1f} ms")


def big(meter: harness.Meter, server: harness.Server, sizes: list[int]) -> None:
    for megabytes in sizes:
        result = session(meter, server, body_size=megabytes * 1_000_000)
        print(f"  {megabytes:3d} MB: peak RSS {result.maxrss_kib / 1024:.1f} MiB, DATA {result.data_seconds:.2f} s "
              f"({megabytes / result.data_seconds:.1f} MB/s)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--big-mb", default="1,50")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.big_mb.split(",") if size]
    work = harness.make_workdir()
    qq_double, _kind = harness.build_qq_double(work)
    meter = harness.Meter(work)
    harness.precompile("/usr/bin/python3")
    base = server_for(work, "base", harness.MINIMAL_STACK, None, qq_double)
    big_config = {"plugin_timeout": ["600"], "databytes": ["0"]}
    message = harness.message_bytes()
    print(f"measured with {meter.kind}; {args.runs} runs; median (min-max)")
    with opendkim(domain="client.test") as dkim:
        line = f"milter dkim {dkim.address}"
        filtered = server_for(work, "milter", [line, *harness.MINIMAL_STACK], None, qq_double)
        steps = milter_steps(message)
        report("milter -> opendkim (signing)",
               measure(meter, base, filtered, lambda: milter_alone(("127.0.0.1", dkim.port), steps), args.runs))
        big_server = server_for(work, "milter-big", [f"{line} body_timeout 120 eom_timeout 300",
                                                     *harness.MINIMAL_STACK], big_config, qq_double)
        big(meter, big_server, sizes)
    with rspamd() as daemon:
        line = f"rspamd port {daemon.port}"
        filtered = server_for(work, "rspamd", [line, *harness.MINIMAL_STACK], None, qq_double)
        report("rspamd (/checkv2)",
               measure(meter, base, filtered, lambda: rspamd_alone(daemon.port, message), args.runs))
        big_server = server_for(work, "rspamd-big", [f"{line} timeout 500 size_limit 60000000",
                                                     *harness.MINIMAL_STACK], big_config, qq_double)
        big(meter, big_server, sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
