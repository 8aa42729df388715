"""Receiving one big message in-process: DATA against BDAT in 1 MiB chunks (issue 17).

    python3 bench/chunking.py [--lines N] [--runs R]

Prints the wall time and MB/s of each way, interleaved, R runs each; the
message is N lines of 60 octets (default 300,000: 18.6 MB).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

from qpsmtpd.testing import run_session  # noqa: E402

ENVELOPE = b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.test>\r\n"
CONFIG = {"plugins": ["rcpt_ok"], "rcpthosts": ["example.test"]}
STEP = 1 << 20


def sessions(lines: int) -> tuple[int, dict[str, bytes]]:
    body = b"".join(b"line %08d of the benchmark message, some text to fill it\r\n" % n for n in range(lines))
    message = b"Subject: bench\r\n\r\n" + body
    chunks = b"".join(b"BDAT %d%s\r\n" % (len(message[i:i + STEP]), b" LAST" if i + STEP >= len(message) else b"")
                      + message[i:i + STEP] for i in range(0, len(message), STEP))
    return len(message), {"DATA": ENVELOPE + b"DATA\r\n" + message + b".\r\nQUIT\r\n",
                          "BDAT 1 MiB chunks": ENVELOPE + chunks + b"QUIT\r\n"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size, ways = sessions(args.lines)
    for _ in range(args.runs):
        for name, payload in ways.items():
            started = time.perf_counter()
            result = run_session(payload, config=CONFIG, capture_queue=True)
            elapsed = time.perf_counter() - started
            if result.replies()[-2][0] != 250:
                print(f"{name}: not queued: {result.replies()[-2]}")
                return 1
            print(f"{name}: {size / 1e6:.1f} MB in {elapsed * 1000:.0f} ms ({size / 1e6 / elapsed:.0f} MB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
