"""Bounded fuzzing: mutated SMTP sessions in-process and through the real qpsmtpd.py.

Sessions start from a small corpus of realistic dialogues (EHLO, pipelining,
AUTH, DATA with headers and dots, SIZE and BODY parameters) and are mutated:
bytes flipped or inserted (NUL, bare CR/LF, ESC, U+2028, `²`, 0xff), lines
repeated, dropped, swapped, cut, made very long, a lone `.` moved, reads cut
at random sizes.  A session fails the test on a traceback, a plugin or engine
fault in the log, an `Internal error` reply, a reply line that is not
`NNN[ -]printable text`, an unfinished session or (real process) a hang.

By default each part runs about 2 s (CI); set QPSMTPD_FUZZ_SECONDS for longer runs
and QPSMTPD_FUZZ_SEED to reproduce one (the failing seed is in the message).
"""

from __future__ import annotations

import base64
import os
import random
import re
import subprocess
import sys
import time

import pytest

from qpsmtpd.testing import run_session
from sessionfile import QPSMTPD, write_config

SECONDS = float(os.environ.get("QPSMTPD_FUZZ_SECONDS", "2"))
FIXED_SEED = os.environ.get("QPSMTPD_FUZZ_SEED")
CONFIG = {
    "me": ["mx.example.test"], "rcpthosts": ["example.test"], "databytes": ["200000"],
    "plugins": ["dont_require_anglebrackets", "whitelist", "badmailfrom", "badrcptto", "headers",
                "auth/auth_flat_file", "count_unrecognized_commands 4", "rcpt_ok"],
    "badmailfrom": ["bad@client.test"], "badrcptto": ["nobody@example.test"], "whitelistsenders": ["friend.test"],
    "flat_auth_pw": ["alice@client.test:secret"], "max_header_size": ["20000"],
}
PLAIN = base64.b64encode(b"\0alice@client.test\0secret").decode()
CORPUS = [
    ["EHLO client.test", "MAIL FROM:<a@client.test> SIZE=100 BODY=8BITMIME", "RCPT TO:<b@example.test>",
     "DATA", "From: a@client.test", "Subject: hi", "X-Fold: a", " b", "", "body", "..dot", ".", "QUIT"],
    ["HELO client.test", "MAIL FROM:<>", "RCPT TO:<postmaster>", "RCPT TO:<\"q x\"@example.test>", "DATA",
     "Subject: x", "", ".", "RSET", "NOOP", "VRFY x", "HELP", "QUIT"],
    ["EHLO c", f"AUTH PLAIN {PLAIN}", "MAIL FROM:<a@b.test>", "RCPT TO:<x@foreign.test>", "DATA", "a: b", "",
     "c", ".", "QUIT"],
    ["EHLO c", "AUTH LOGIN", base64.b64encode(b"alice@client.test").decode(), base64.b64encode(b"secret").decode(),
     "MAIL FROM:<f@friend.test>", "RCPT TO:<victim%evil.test@example.test>", "QUIT"],
    ["EHLO c", "MAIL FROM:a@b.test", "RCPT TO:b@example.test", "DATA", "Subject: t", "", "x" * 300, ".", "QUIT"],
]
SPECIAL = [b"\0", b"\r", b"\n", b"\r\n", b"\x1b", b"\xe2\x80\xa8", b"\xc2\xb2", b"\xff", b"<", b">", b"\"",
           b"@", b":", b"=", b" ", b"\t", b".\r\n", b"\r\n.\r\n", b"\\", b"%", b"SIZE=\xc2\xb2", b"SIZE=99999999999"]
REPLY_LINE = re.compile(rb"[2-5][0-9][0-9](?:[ -][\x20-\x7e\x80-\xff]*)?")
FAULT_MARKS = ("Traceback", "FATAL PLUGIN ERROR", "failed unexpectedly", "Internal error")


def mutate(rng: random.Random) -> bytes:
    lines = [line.encode() for line in rng.choice(CORPUS)]
    for _ in range(rng.randint(1, 6)):
        kind = rng.randrange(9)
        index = rng.randrange(len(lines)) if lines else 0
        if not lines:
            lines.append(b"NOOP")
        elif kind == 0:  # flip a byte
            line = bytearray(lines[index] or b"x")
            line[rng.randrange(len(line))] = rng.randrange(256)
            lines[index] = bytes(line)
        elif kind == 1:  # insert a special sequence
            line = lines[index]
            at = rng.randint(0, len(line))
            lines[index] = line[:at] + rng.choice(SPECIAL) + line[at:]
        elif kind == 2:
            lines.insert(index, lines[index])
        elif kind == 3:
            del lines[index]
        elif kind == 4:
            other = rng.randrange(len(lines))
            lines[index], lines[other] = lines[other], lines[index]
        elif kind == 5:
            lines[index] = lines[index][:rng.randint(0, len(lines[index]))]
        elif kind == 6:
            lines[index] = lines[index] + rng.choice([b"a", b" ", b"\xff", b"."]) * rng.choice([100, 3000, 70000])
        elif kind == 7:
            lines.insert(index, b".")
        else:
            lines.insert(index, rng.choice([b"DATA", b"RSET", b"MAIL FROM:<x@y.test>", b"RCPT TO:<z@example.test>",
                                            b"AUTH LOGIN", b"AUTH PLAIN", b"*", b"EHLO", b"MAIL", b"BDAT 10"]))
    ending = rng.choice([b"\r\n", b"\n", b"\r\n"])
    data = ending.join(lines) + (ending if rng.random() < 0.9 else b"")
    return data


def check_output(output: bytes, log: str, what: str) -> None:
    for mark in FAULT_MARKS:
        assert mark not in log, f"{what}: {mark!r} in the log"
    assert b"Internal error" not in output, f"{what}: an internal error reply"
    lines = output.split(b"\r\n")
    assert lines[-1] == b"", f"{what}: the output does not end with CRLF"
    for line in lines[:-1]:
        assert REPLY_LINE.fullmatch(line), f"{what}: invalid reply line {line[:200]!r}"


def seeds():
    if FIXED_SEED is not None:
        yield int(FIXED_SEED)
        return
    started = time.monotonic()
    base = random.randrange(1 << 30)
    count = 0
    while time.monotonic() - started < SECONDS or count < 20:
        yield base + count
        count += 1


def test_fuzz_in_process():
    runs = 0
    for seed in seeds():
        rng = random.Random(seed)
        data = mutate(rng)
        chunk = rng.choice([1, 7, 64, 4096, 1 << 20])
        what = f"seed {seed} (QPSMTPD_FUZZ_SEED={seed}), read size {chunk}, input {data[:300]!r}"
        started = time.monotonic()
        result = run_session(data, config=CONFIG, capture_queue=True, chunk_size=chunk)
        assert time.monotonic() - started < 20, f"{what}: took too long"
        check_output(result.output, "\n".join(result.log), what)
        assert result.output.startswith(b"220 "), what
        runs += 1
    assert runs >= 1


def test_fuzz_real_process(tmp_path):
    """Through qpsmtpd.py on pipes (the interpreter, imports, stderr logging and exit included)."""
    queue = tmp_path / "maildir"
    files = {name: value if len(value) > 1 else value[0] for name, value in CONFIG.items()}
    files["plugins"] = CONFIG["plugins"] + [f"queue/maildir {queue}"]
    files["spool_dir"] = str(tmp_path / "spool")
    files["loglevel"] = "6"
    write_config(str(tmp_path / "config"), files, str(tmp_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "QPSMTPD", "RELAYCLIENT"))}
    env["QPSMTPD_CONFIG"] = str(tmp_path / "config")
    runs = 0
    for seed in seeds():
        data = mutate(random.Random(seed))
        what = f"seed {seed} (QPSMTPD_FUZZ_SEED={seed}), input {data[:300]!r}"
        try:
            proc = subprocess.run([sys.executable, QPSMTPD], input=data, capture_output=True, env=env, timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{what}: hung")
        assert proc.returncode == 0, f"{what}: exit {proc.returncode}"
        check_output(proc.stdout, proc.stderr.decode("utf-8", "replace"), what)
        runs += 1
    assert os.listdir(tmp_path / "spool") == [] if (tmp_path / "spool").exists() else True
