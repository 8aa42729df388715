"""Benchmark: a 100 MB message through queue/qmail-queue and queue/qmqp-forward.

    /usr/bin/python3 bench/big_message.py [--size-mb 100]

Runs the real `qpsmtpd.py` once per backend under `/usr/bin/time -v`, feeding
a whole SMTP session (with a message of the given size) on stdin, and prints
the reply to the message, the wall time and the peak RSS of the process
tree (`Maximum resident set size`; for the qmail-queue row that includes the
qmail-queue program, which is why it is a streaming stand-in, see below).

* qmail-queue: qmail cannot be installed here, and the test double
  (t/bin/qmail-queue-double) keeps the whole message in memory to check it,
  which would dominate the figure.  The stand-in is a two-line shell script
  that streams fd 0 to a file and then fd 1 (the envelope) to another one,
  as qmail-queue reads them; the stored size is checked.
* QMQP: a private Postfix (t/components.postfix_private, root only) with
  `message_size_limit` raised; its qmqpd must answer K and hold the message.

Not a test: nothing is asserted except that each run queued the message.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "t"))
sys.path.insert(0, os.path.join(REPO, "lib"))
PYTHON = "/usr/bin/python3"
LINE = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-the-quick-fox\r\n"
QQ_SINK = """#!/bin/sh
cat > "$QQ_BENCH_DIR/message" || exit 53
cat <&1 > "$QQ_BENCH_DIR/envelope" || exit 54
exit 0
"""


def write_session(path: str, size: int) -> int:
    """An SMTP session whose message body is about `size` bytes; returns the stored body size."""
    head = (b"EHLO bench.test\r\nMAIL FROM:<bench@client.test>\r\nRCPT TO:<big@example.test>\r\nDATA\r\n"
            b"Message-Id: <big@client.test>\r\nSubject: big\r\n\r\n")
    count = size // len(LINE)
    with open(path, "wb") as handle:
        handle.write(head)
        chunk = LINE * 1024
        for _ in range(count // 1024):
            handle.write(chunk)
        handle.write(LINE * (count % 1024))
        handle.write(b".\r\nQUIT\r\n")
    return count * (len(LINE) - 1)


def write_config(directory: str, plugin_line: str, extra: dict[str, str] | None = None) -> str:
    config = os.path.join(directory, "config")
    os.makedirs(config, exist_ok=True)
    files = {"plugins": f"rcpt_ok\n{plugin_line}\n", "rcpthosts": "example.test\n", "me": "mx.bench.test\n",
             "spool_dir": os.path.join(directory, "spool") + "\n", "loglevel": "4\n", **(extra or {})}
    for name, text in files.items():
        with open(os.path.join(config, name), "w") as handle:
            handle.write(text)
    return config


def timed_run(session: str, config: str, env: dict[str, str], workdir: str) -> tuple[str, float, float]:
    """Run qpsmtpd.py under /usr/bin/time -v; return (reply to the message, seconds, peak RSS MiB)."""
    stats = os.path.join(workdir, "time.txt")
    environment = {"PATH": "/usr/bin:/bin", "QPSMTPD_CONFIG": config, **env}
    with open(session, "rb") as stdin, open(os.path.join(workdir, "stderr.log"), "wb") as stderr:
        started = time.monotonic()
        out = subprocess.run(["/usr/bin/time", "-v", "-o", stats, PYTHON, os.path.join(REPO, "qpsmtpd.py")],
                             stdin=stdin, stdout=subprocess.PIPE, stderr=stderr, env=environment, check=False)
        elapsed = time.monotonic() - started
    with open(stats) as handle:
        rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", handle.read()).group(1))
    replies = out.stdout.decode("utf-8", "replace").split("\r\n")
    after_data = [line for line in replies[replies.index("354 go ahead") + 1:] if line][:1] if "354 go ahead" in replies else replies[-3:-2]
    return (after_data[0] if after_data else "(no reply)"), elapsed, rss_kb / 1024


def bench_qmail_queue(session: str, body_size: int, workdir: str) -> tuple[str, float, float, str]:
    sink = os.path.join(workdir, "qmail-queue-sink")
    with open(sink, "w") as handle:
        handle.write(QQ_SINK)
    os.chmod(sink, 0o755)
    config = write_config(workdir, "queue/qmail-queue")
    reply, elapsed, rss = timed_run(session, config, {"QMAILQUEUE": sink, "QQ_BENCH_DIR": workdir}, workdir)
    stored = os.path.getsize(os.path.join(workdir, "message")) if os.path.exists(os.path.join(workdir, "message")) else 0
    envelope = open(os.path.join(workdir, "envelope"), "rb").read() if os.path.exists(os.path.join(workdir, "envelope")) else b""
    ok = stored > body_size and envelope == b"Fbench@client.test\0Tbig@example.test\0\0"
    return reply, elapsed, rss, f"{stored} bytes stored, envelope {'ok' if ok else 'WRONG'}"


def bench_qmqp(session: str, body_size: int, workdir: str) -> tuple[str, float, float, str]:
    import components

    with components.postfix_private(qmqp=True, smtpd=False) as postfix:
        subprocess.run(["postconf", "-c", str(postfix.conf_dir), "-e", "message_size_limit = 0",
                        "queue_minfree = 0"], check=True)
        os.utime(postfix.conf_dir / "main.cf", (0, 0))
        os.kill(postfix.pid, 1)
        time.sleep(0.5)
        config = write_config(workdir, f"queue/qmqp-forward 127.0.0.1 {postfix.qmqp_port}")
        reply, elapsed, rss = timed_run(session, config, {}, workdir)
        queued = [m for m in postfix.queue() if m["sender"] == "bench@client.test"]
        detail = (f"postqueue: {queued[0]['message_size']} bytes held" if queued else "NOT in the Postfix queue")
        postfix.clear_queue()
    return reply, elapsed, rss, detail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=100)
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="qpsmtpd-bench-")
    os.chmod(base, 0o755)
    try:
        session = os.path.join(base, "session.txt")
        body = write_session(session, args.size_mb * 1000 * 1000)
        small = os.path.join(base, "small.txt")
        write_session(small, 1000)
        rows = []
        for label, runner, path in (("qmail-queue, 1 KB", bench_qmail_queue, small),
                                    (f"qmail-queue, {args.size_mb} MB", bench_qmail_queue, session),
                                    ("QMQP (Postfix qmqpd), 1 KB", bench_qmqp, small),
                                    (f"QMQP (Postfix qmqpd), {args.size_mb} MB", bench_qmqp, session)):
            workdir = tempfile.mkdtemp(dir=base)
            os.chmod(workdir, 0o755)
            rows.append((label, *runner(path, body if path == session else 0, workdir)))
        print(f"{'backend':32} {'wall s':>7} {'peak RSS MiB':>13}  reply / check")
        for label, reply, elapsed, rss, detail in rows:
            print(f"{label:32} {elapsed:7.2f} {rss:13.1f}  {reply[:60]} / {detail}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
