"""Fault matrix: every shipped queue backend through its failure modes.

The rule, for every case: the client gets 250 if and only if the message was
delivered exactly once; otherwise a 4xx/5xx and nothing delivered (no copy
for some recipients, no second copy on the client's retry).  queue/lmtp
gets the per-recipient form of the rule (LMTP cannot take back a copy a
recipient already has): over the client's retries nobody gets a second
copy, and 250 comes only when everybody has exactly one.

Real components where they can fail on demand: the qmail-queue test double
(t/bin: exit codes, signals, delays), Postfix (cleanup, qmqpd, smtpd) in a
private instance, tmpfs mounts for a full disk and a cross-device rename.
Peers written here, because no real daemon misbehaves that way on demand:
`/bin/sh` scripts standing in for a qmail-queue that answers before reading
or hangs, and scripted QMQP/SMTP/cleanup servers (`Scripted`) that answer
too early, close half-way, or never answer.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from components import QMAIL_QUEUE_DOUBLE, postfix_private, qq_double_messages
from qpsmtpd.testing import run_session

pytestmark = pytest.mark.components

BODY_LINES = ["Message-Id: <fault@client.test>", "Subject: fault matrix", ""]
SMALL = BODY_LINES + ["short body"]
BIG = BODY_LINES + [f"line {n:06d} " + "x" * 90 for n in range(3000)]  # ~300 kB: more than a pipe holds


def session(message=SMALL, recipients=("bob@example.test",)) -> list[str]:
    return (["EHLO client.test", "MAIL FROM:<alice@client.test>"] + [f"RCPT TO:<{r}>" for r in recipients]
            + ["DATA", *message, ".", "QUIT"])


def run(plugin_line: str, message=SMALL, recipients=("bob@example.test",), config=None, env=None):
    cfg = {"plugins": ["rcpt_ok", plugin_line], "rcpthosts": ["example.test"], "me": "mx.example.test",
           **(config or {})}
    return run_session(session(message, recipients), config=cfg, env=env)


def final_reply(result) -> int:
    codes = result.codes()
    assert 354 in codes, codes
    return codes[codes.index(354) + 1]


def assert_rule(result, delivered: int, expect_success: bool | None = None) -> None:
    """250 iff delivered exactly once; else 4xx/5xx and nothing delivered."""
    code = final_reply(result)
    if code == 250:
        assert delivered == 1, f"250 but delivered {delivered} times"
    else:
        assert 400 <= code < 600 and delivered == 0, f"{code} with {delivered} deliveries"
    if expect_success is not None:
        assert (code == 250) == expect_success, result.lines()


# -- qmail-queue -----------------------------------------------------------------------------

def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


QQ_DOUBLE_CASES = {  # env for the double -> success expected
    "accepts": ({}, True),
    **{f"exit {code}": ({"QQ_DOUBLE_EXIT": str(code)}, False) for code in (11, 31, 51, 53, 54, 71, 81, 100, 120)},
    **{f"killed {sig}": ({"QQ_DOUBLE_SIGNAL": sig}, False) for sig in ("KILL", "TERM", "SEGV")},
    "hangs after reading": ({"QQ_DOUBLE_SLEEP": "30"}, False),
}


@pytest.mark.parametrize("message", [SMALL, BIG], ids=["small", "big"])
@pytest.mark.parametrize("case", sorted(QQ_DOUBLE_CASES))
def test_qmail_queue_double(tmp_path, case, message):
    env, success = QQ_DOUBLE_CASES[case]
    store = tmp_path / "qq"
    store.mkdir()
    started = time.monotonic()
    result = run("queue/qmail-queue", message, ("bob@example.test", "carol@example.test"),
                 config={"qmail_queue_timeout": "1"},
                 env={"QMAILQUEUE": str(QMAIL_QUEUE_DOUBLE), "QQ_DOUBLE_DIR": str(store), **env})
    stored = qq_double_messages(store)
    assert_rule(result, len(stored), success)
    assert time.monotonic() - started < 10
    if stored:
        assert stored[0].recipients == ["bob@example.test", "carol@example.test"]


QQ_SCRIPTS = {
    "says yes without reading": "exit 0",
    "reads the message, not the envelope": "cat >/dev/null; exit 0",
    "reads part of the message": "head -c 100 >/dev/null; exit 0",
    "hangs before reading": "exec sleep 30",
    "reads, then hangs": "cat >/dev/null; exec sleep 30",
    "fails without reading": "exit 71",
}


@pytest.mark.parametrize("message", [SMALL, BIG], ids=["small", "big"])
@pytest.mark.parametrize("case", sorted(QQ_SCRIPTS))
def test_qmail_queue_misbehaving_programs(tmp_path, case, message):
    program = script(tmp_path, "qq", QQ_SCRIPTS[case])
    started = time.monotonic()
    result = run("queue/qmail-queue", message, config={"qmail_queue_timeout": "1"}, env={"QMAILQUEUE": program})
    assert_rule(result, 0, False)  # none of these stores anything: 250 would lose the message
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("program", ["/nonexistent/qmail-queue", "relative/qmail-queue", "/etc/passwd"])
def test_qmail_queue_cannot_start(program):
    assert_rule(run("queue/qmail-queue", env={"QMAILQUEUE": program}), 0, False)


# -- maildir ---------------------------------------------------------------------------------

def maildir_copies(base: Path) -> int:
    return sum(len(os.listdir(new)) for new in base.rglob("new") if new.is_dir())


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64k", options: str = ""):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_maildir_delivers_every_recipient_once(tmp_path):
    base = tmp_path / "md"
    result = run(f"queue/maildir {base} %l", recipients=("bob@example.test", "carol@example.test"))
    assert final_reply(result) == 250
    assert maildir_copies(base) == 2 and maildir_copies(base / "bob") == 1


def test_maildir_target_is_a_file(tmp_path):
    (tmp_path / "md").write_text("")
    result = run(f"queue/maildir {tmp_path / 'md'}")
    assert_rule(result, 0, False)


def test_maildir_disk_full(tmp_path):
    with tmpfs(tmp_path / "md") as base:
        result = run(f"queue/maildir {base}", BIG)
        assert_rule(result, maildir_copies(base), False)
        assert os.listdir(base / "tmp") == []  # the partial file is gone


def test_maildir_second_recipient_rename_fails_nothing_delivered(tmp_path):
    """carol's new/ is another file system: her rename fails (EXDEV) after bob's copy was
    renamed; bob's copy must be taken back (a retry would deliver it again)."""
    base = tmp_path / "md"
    for sub in ("cur", "tmp"):
        (base / "carol" / sub).mkdir(parents=True)
    with tmpfs(base / "carol" / "new", "1m"):
        result = run(f"queue/maildir {base} %l", recipients=("bob@example.test", "carol@example.test"))
        code = final_reply(result)
        assert code == 451 and maildir_copies(base) == 0, (code, maildir_copies(base))
        assert not os.listdir(base / "bob" / "tmp") and not os.listdir(base / "carol" / "tmp")


def test_maildir_read_only_second_maildir(tmp_path):
    base = tmp_path / "md"
    (base / "carol").mkdir(parents=True)
    with tmpfs(base / "carol", "1m", ",ro"):
        result = run(f"queue/maildir {base} %l", recipients=("bob@example.test", "carol@example.test"))
        assert_rule(result, 0, False)
        assert maildir_copies(base) == 0


# -- scripted network peers ---------------------------------------------------------------

class Scripted:
    """A TCP (or unix socket) server on 127.0.0.1 running `handler(conn)` for each connection."""

    def __init__(self, handler, path: str | None = None) -> None:
        self.handler = handler
        self.sock = socket.socket(socket.AF_UNIX if path else socket.AF_INET)
        self.sock.bind(path or ("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = None if path else self.sock.getsockname()[1]
        self.complete: list[bytes] = []  # what a handler counted as delivered
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.run_one, args=(conn,), daemon=True).start()

    def run_one(self, conn) -> None:
        with conn:
            conn.settimeout(20)
            try:
                self.handler(self, conn)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


def read_package(conn) -> bytes:
    """A whole QMQP package (one netstring), or what came before the connection closed."""
    data = b""
    while b":" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    length, _, rest = data.partition(b":")
    need = int(length) + 1
    while len(rest) < need:
        chunk = conn.recv(65536)
        if not chunk:
            return length + b":" + rest
        rest += chunk
    return length + b":" + rest


def qmqp_answer(text: bytes) -> bytes:
    return b"%d:%s," % (len(text), text)


def qmqp_k_at_once(server, conn):
    conn.sendall(qmqp_answer(b"Kok before reading"))  # a yes for nothing


def qmqp_close_half_way(server, conn):
    conn.recv(1000)


def qmqp_read_then_silence(server, conn):
    read_package(conn)
    time.sleep(5)


def qmqp_read_then(answer: bytes):
    def handler(server, conn):
        package = read_package(conn)
        if answer.partition(b":")[2].startswith(b"K") and answer.endswith(b","):
            server.complete.append(package)
        conn.sendall(answer)
    return handler


QMQP_CASES = {
    "K before the package": (qmqp_k_at_once, False),
    "closes half-way": (qmqp_close_half_way, False),
    "never answers": (qmqp_read_then_silence, False),
    "Z": (qmqp_read_then(qmqp_answer(b"Zlater")), False),
    "D": (qmqp_read_then(qmqp_answer(b"Dno")), False),
    "garbage": (qmqp_read_then(b"HTTP/1.0 400 Bad\r\n\r\n"), False),
    "answer cut short": (qmqp_read_then(b"10:Kok"), False),
    "K after the package": (qmqp_read_then(qmqp_answer(b"Kqueued")), True),
}


@pytest.mark.parametrize("message", [SMALL, BIG], ids=["small", "big"])
@pytest.mark.parametrize("case", sorted(QMQP_CASES))
def test_qmqp_scripted_server(case, message):
    handler, success = QMQP_CASES[case]
    server = Scripted(handler)
    try:
        result = run(f"queue/qmqp-forward 127.0.0.1 {server.port}", message, config={"qmqp_timeout": "1"})
    finally:
        server.close()
    assert_rule(result, len(server.complete), success)


@pytest.fixture(scope="module")
def postfix():
    with postfix_private(qmqp=True, smtpd=True) as daemon:
        yield daemon


@pytest.mark.parametrize("case", ["K before the package", "closes half-way"])
def test_qmqp_early_failure_tries_the_next_server(pf, case, tmp_path):
    """The first server cannot have the message: the second (Postfix qmqpd) gets it, once."""
    server = Scripted(QMQP_CASES[case][0])
    try:
        result = run("queue/qmqp-forward", BIG, config={
            "qmqpservers": [f"127.0.0.1:{server.port}", f"127.0.0.1:{pf.qmqp_port}"], "qmqp_timeout": "2"})
    finally:
        server.close()
    assert_rule(result, len(pf.queue_ids()), True)


def test_qmqp_postfix_accepts_once(pf):
    assert_rule(run(f"queue/qmqp-forward 127.0.0.1 {pf.qmqp_port}", BIG), len(pf.queue_ids()), True)


def test_qmqp_no_server():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert_rule(run(f"queue/qmqp-forward 127.0.0.1 {port}"), 0, False)


# -- smtp-forward ---------------------------------------------------------------------------

def smtp_server(refuse: dict[bytes, bytes] | None = None, stop_at: bytes | None = None, silent_at: bytes | None = None):
    """A scripted next hop: `refuse` maps a command prefix to its reply; at `stop_at` it closes,
    at `silent_at` it never answers; a message counts as delivered when its final dot got 250."""
    refuse = refuse or {}

    def handler(server, conn):
        reader = conn.makefile("rb")
        conn.sendall(b"220 scripted ESMTP\r\n")
        while True:
            line = reader.readline()
            if not line:
                return
            word = line[:4].upper()
            if stop_at and line.upper().startswith(stop_at):
                return
            if silent_at and line.upper().startswith(silent_at):
                time.sleep(5)
                return
            for prefix, reply in refuse.items():
                if line.upper().startswith(prefix):
                    conn.sendall(reply + b"\r\n")
                    break
            else:
                if word == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    body = b""
                    while not body.endswith(b"\r\n.\r\n"):
                        chunk = reader.readline()
                        if not chunk:
                            return
                        body += chunk
                        if stop_at == b".":  # gone after the first line of the message
                            return
                    if silent_at == b".":
                        time.sleep(5)
                        return
                    reply = refuse.get(b".", b"250 2.0.0 queued as ABC")
                    if reply.startswith(b"250"):
                        server.complete.append(body)
                    conn.sendall(reply + b"\r\n")
                elif word == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")
    return handler


SMTP_CASES = {
    "accepts": ({}, True),
    "greeting refused": ({"refuse": {}, "stop_at": None, "silent_at": b"EHLO"}, False),
    "second RCPT 4xx": ({"refuse": {b"RCPT TO:<CAROL": b"450 later"}}, False),
    "second RCPT 5xx": ({"refuse": {b"RCPT TO:<CAROL": b"550 no"}}, False),
    "DATA 4xx": ({"refuse": {b"DATA": b"451 later"}}, False),
    "final dot 4xx": ({"refuse": {b".": b"452 full"}}, False),
    "final dot 5xx": ({"refuse": {b".": b"554 spam"}}, False),
    "closes mid-DATA": ({"stop_at": b"."}, False),
    "silent after the dot": ({"silent_at": b"."}, False),
    "closes at MAIL": ({"stop_at": b"MAIL"}, False),
}


@pytest.mark.parametrize("message", [SMALL, BIG], ids=["small", "big"])
@pytest.mark.parametrize("case", sorted(SMTP_CASES))
def test_smtp_forward_scripted_next_hop(case, message):
    options, success = SMTP_CASES[case]
    server = Scripted(smtp_server(**options))
    try:
        result = run(f"queue/smtp-forward 127.0.0.1 {server.port}", message,
                     ("bob@example.test", "carol@example.test"), config={"smtp_forward_timeout": "1"})
    finally:
        server.close()
    assert_rule(result, len(server.complete), success)


def test_smtp_forward_postfix_accepts_once(pf):
    result = run(f"queue/smtp-forward 127.0.0.1 {pf.smtpd_port}", BIG, ("bob@example.test", "carol@example.test"))
    assert_rule(result, len(pf.queue_ids()), True)


# -- postfix-queue ---------------------------------------------------------------------------

def cleanup_server(status: bytes | None, read_all: bool = True):
    def handler(server, conn):
        conn.sendall(b"queue_id\0ABC123\0\0")
        if not read_all:
            conn.recv(100)
            return
        data = b""
        while not data.endswith(b"X\x00E\x00"):
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        if status is None:
            time.sleep(5)
            return
        if status == b"0":
            server.complete.append(data)
        conn.sendall(b"status\0" + status + b"\0reason\0test\0\0")
    return handler


CLEANUP_CASES = {
    "status 0": (cleanup_server(b"0"), True),
    "write error": (cleanup_server(b"2"), False),
    "content rejected": (cleanup_server(b"8"), False),
    "defer": (cleanup_server(b"256"), False),
    "garbage status": (cleanup_server(b"x"), False),
    "closes after flags": (cleanup_server(b"0", read_all=False), False),
    "never answers": (cleanup_server(None), False),
}


@pytest.mark.parametrize("case", sorted(CLEANUP_CASES))
def test_postfix_queue_scripted_cleanup(tmp_path, case):
    handler, success = CLEANUP_CASES[case]
    path = str(tmp_path / "cleanup")
    server = Scripted(handler, path)
    try:
        result = run(f"queue/postfix-queue {path}", BIG, config={"postfix_queue_timeout": "1"})
    finally:
        server.close()
    assert_rule(result, len(server.complete), success)


def test_postfix_queue_real_cleanup_once(pf):
    assert_rule(run(f"queue/postfix-queue {pf.cleanup_socket}", BIG), len(pf.queue_ids()), True)


def test_postfix_queue_no_socket(tmp_path):
    assert_rule(run(f"queue/postfix-queue {tmp_path / 'none'}"), 0, False)


# -- lmtp ----------------------------------------------------------------------------------
# LMTP answers per recipient, so a partly failed message cannot be taken back; queue/lmtp
# journals the recipients that got it and skips them when the client retries.  The rule
# here is the per-recipient form: over the client's retries no recipient gets a second
# copy, and the answer is 250 only when every recipient has exactly one.

def lmtp_server(plan: dict):
    """`plan`: recipient (lower case) -> list of outcomes, one per attempt: "ok", "rcpt 4xx",
    "rcpt 5xx", "data 4xx", "data 5xx", "drop" (close after the dot, nothing delivered)."""
    attempts: dict[str, int] = {}

    def outcome(rcpt: str) -> str:
        steps = plan.get(rcpt, ["ok"])
        return steps[min(attempts.get(rcpt, 0), len(steps) - 1)]

    def handler(server, conn):
        reader = conn.makefile("rb")
        conn.sendall(b"220 scripted LMTP\r\n")
        accepted: list[str] = []
        while True:
            line = reader.readline()
            if not line:
                return
            upper = line.upper()
            if upper.startswith(b"RCPT TO:<"):
                rcpt = line[9:line.index(b">")].decode().lower()
                step = outcome(rcpt)
                if step.startswith("rcpt"):
                    attempts[rcpt] = attempts.get(rcpt, 0) + 1
                    conn.sendall(b"450 4.2.1 later\r\n" if "4xx" in step else b"550 5.1.1 unknown\r\n")
                else:
                    accepted.append(rcpt)
                    conn.sendall(b"250 2.1.5 ok\r\n")
            elif upper.startswith(b"DATA"):
                conn.sendall(b"354 go\r\n")
                while reader.readline() not in (b".\r\n", b""):
                    pass
                replies = []
                for rcpt in accepted:
                    step = outcome(rcpt)
                    attempts[rcpt] = attempts.get(rcpt, 0) + 1
                    if step == "drop":
                        return
                    if step == "ok":
                        server.complete.append(rcpt)
                        replies.append(b"250 2.0.0 delivered\r\n")
                    else:
                        replies.append(b"452 4.2.2 full\r\n" if "4xx" in step else b"552 5.2.2 over quota\r\n")
                conn.sendall(b"".join(replies))
            elif upper.startswith(b"QUIT"):
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")
    return handler


LMTP_CASES = {
    "all delivered": {},
    "one recipient 4xx after the dot": {"carol@example.test": ["data 4xx", "ok"]},
    "one recipient 4xx at RCPT": {"carol@example.test": ["rcpt 4xx", "ok"]},
    "connection dropped after the dot": {"bob@example.test": ["drop", "ok"]},
    "one recipient 5xx after the dot": {"carol@example.test": ["data 5xx"]},
    "one recipient 5xx at RCPT": {"carol@example.test": ["rcpt 5xx"]},
}


@pytest.mark.parametrize("case", sorted(LMTP_CASES))
def test_lmtp_retries_never_deliver_twice(tmp_path, case):
    server = Scripted(lmtp_server(LMTP_CASES[case]))
    recipients = ("bob@example.test", "carol@example.test")
    config = {"lmtp_timeout": "1", "lmtp_journal_dir": str(tmp_path / "journal")}
    codes = []
    try:
        for _attempt in range(4):  # the client retries a 4xx, stops at 250 or 5xx
            code = final_reply(run(f"queue/lmtp 127.0.0.1:{server.port}", SMALL, recipients, config=config))
            codes.append(code)
            if code == 250 or code >= 500:
                break
    finally:
        server.close()
    copies = {rcpt: server.complete.count(rcpt) for rcpt in recipients}
    assert all(count <= 1 for count in copies.values()), (codes, copies)
    assert (codes[-1] == 250) == all(count == 1 for count in copies.values()), (codes, copies)
    assert all(400 <= code < 600 for code in codes[:-1]), codes
