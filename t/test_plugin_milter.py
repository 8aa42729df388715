"""plugins/milter.py: the milter protocol 6 client.

Two kinds of tests:

- against real milters from Debian (marked ``components``): opendkim signs
  (the queued message carries a DKIM-Signature that dkimpy verifies with the
  key opendkim used), clamav-milter on a private clamd rejects EICAR with its
  own reply, rspamd's proxy worker in milter mode rejects GTUBE and applies
  its header changes;
- against :class:`ScriptedMilter`, a milter written in this test, for the
  answers no real milter gives on demand: each end-of-message modification,
  discard, reply codes, skip, progress, a slow step, protocol garbage and a
  dropped connection.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import tempfile
import threading
import time

import pytest
from qpsmtpd.milter import ALL_ACTIONS, HDR_LEADSPC, NOHELO, NR_RCPT, SKIP, MilterClient, parse_replycode
from qpsmtpd.testing import run_session

MESSAGE = ["From: a@example.com", "To: x@example.test", "Subject: hi", "", "body line", "second line"]


def session(plugins: list[str], message: list[str] = MESSAGE, rcpts: tuple[str, ...] = ("x@example.test",),
            mail: str = "MAIL FROM:<a@example.com>", extra: list[str] | None = None, **kwargs):
    lines = ["EHLO client.test", mail, *[f"RCPT TO:<{rcpt}>" for rcpt in rcpts], "DATA", *message, ".",
             *(extra or []), "QUIT"]
    config = {"plugins": [*plugins, "rcpt_ok"], "rcpthosts": ["example.test"], "loglevel": "6"}
    config.update(kwargs.pop("config", {}))
    return run_session(lines, config=config, capture_queue=True, **kwargs)


# --------------------------------------------------------------------------
# A milter written in the test
# --------------------------------------------------------------------------


def packet(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + command + data


def nul(*texts: str) -> bytes:
    return b"".join(text.encode() + b"\0" for text in texts)


CONTINUE = packet(b"c")
ACCEPT = packet(b"a")
NAMES = {b"C": "connect", b"H": "helo", b"M": "mail", b"R": "rcpt", b"T": "data", b"L": "header",
         b"N": "eoh", b"B": "body", b"E": "eom", b"A": "abort", b"Q": "quit", b"D": "macro"}


class ScriptedMilter:
    """A milter written in this test: answers each step as the test's script says.

    No real milter sends every modification, discard, a multi-line reply code,
    skip, progress, a slow answer, garbage or a dropped connection on demand,
    so this one does.  ``script`` maps a step name (connect, helo, mail, rcpt,
    data, header, eoh, body, eom) to the bytes to answer (a packet or
    several), or to a callable ``(data) -> bytes``; the special value
    ``"close"`` drops the connection, ``("sleep", s, bytes)`` waits first.
    Everything received is recorded in ``received`` as (step, data), macros
    as (``"macro"``, command + pairs).
    """

    def __init__(self, script: dict | None = None, actions: int = ALL_ACTIONS, protocol: int = 0,
                 unix: bool = False, symlist: bytes = b"") -> None:
        self.script = script or {}
        self.actions = actions
        self.protocol = protocol
        self.symlist = symlist
        self.received: list[tuple[str, bytes]] = []
        self.connections = 0
        self.directory = tempfile.mkdtemp(prefix="milter-test-")
        if unix:
            self.path = os.path.join(self.directory, "milter.sock")
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(self.path)
            self.address = f"unix:{self.path}"
        else:
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.listener.listen(5)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def steps(self) -> list[str]:
        return [step for step, _data in self.received if step != "macro"]

    def data_of(self, step: str) -> list[bytes]:
        return [data for name, data in self.received if name == step]

    def macros(self, command: bytes) -> dict[str, str]:
        found: dict[str, str] = {}
        for data in self.data_of("macro"):
            if data[:1] == command:
                words = data[1:].rstrip(b"\0").decode().split("\0")
                found.update(zip(words[::2], words[1::2]))
        return found

    def close(self) -> None:
        self.listener.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _addr = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            reader = conn.makefile("rb")
            while True:
                head = reader.read(4)
                if len(head) < 4:
                    return
                body = reader.read(struct.unpack("!I", head)[0])
                command, data = body[:1], body[1:]
                if command == b"O":
                    conn.sendall(packet(b"O", struct.pack("!III", 6, self.actions, self.protocol) + self.symlist))
                    continue
                step = NAMES.get(command, command.decode())
                self.received.append((step, data))
                if step in ("macro", "abort"):
                    continue
                if step == "quit":
                    return
                answer = self.script.get(step, ACCEPT if step == "eom" else CONTINUE)
                if callable(answer):
                    answer = answer(data)
                if isinstance(answer, tuple) and answer[0] == "sleep":
                    time.sleep(answer[1])
                    answer = answer[2]
                if answer == "close":
                    return
                if answer:
                    try:
                        conn.sendall(answer)
                    except OSError:
                        return


@pytest.fixture
def milter_factory():
    made: list[ScriptedMilter] = []

    def make(*args, **kwargs) -> ScriptedMilter:
        milter = ScriptedMilter(*args, **kwargs)
        made.append(milter)
        return milter

    yield make
    for milter in made:
        milter.close()


def queued_text(result) -> str:
    assert len(result.queued) == 1, result.replies()
    return result.queued[0].message.decode()


# --------------------------------------------------------------------------
# Steps, macros and negotiation
# --------------------------------------------------------------------------


def test_every_step_is_shown_in_order_with_macros(milter_factory):
    milter = milter_factory()
    result = session([f"milter test {milter.address}"], config={"me": ["mx.example.test"]})
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    deadline = time.monotonic() + 2
    while "quit" not in milter.steps() and time.monotonic() < deadline:
        time.sleep(0.01)  # the milter's thread records QUIT after the session has ended
    steps = milter.steps()
    assert steps[:5] == ["connect", "helo", "mail", "rcpt", "data"]
    assert steps[-4:] == ["eoh", "body", "eom", "quit"]
    headers = [data.split(b"\0")[0] for data in milter.data_of("header")]
    assert b"Received" in headers and b"Subject" in headers
    assert milter.data_of("body") == [b"body line\r\nsecond line\r\n"]
    connect = milter.data_of("connect")[0]
    assert connect.startswith(b"[192.0.2.1]\0" + b"4" + struct.pack("!H", 40000) + b"192.0.2.1\0")
    assert milter.data_of("mail")[0] == b"<a@example.com>\0"
    assert milter.macros(b"C")["j"] == "mx.example.test"
    assert milter.macros(b"C")["{daemon_name}"] == "qpsmtpd"
    assert milter.macros(b"C")["{if_addr}"] == "192.0.2.25"
    assert milter.macros(b"M")["{mail_addr}"] == "a@example.com"
    assert milter.macros(b"M")["i"]
    assert milter.macros(b"R")["{rcpt_addr}"] == "x@example.test"


def test_header_values_keep_their_leading_space_only_when_asked(milter_factory):
    plain = milter_factory()
    leading = milter_factory(protocol=HDR_LEADSPC)
    session([f"milter plain {plain.address}", f"milter leading {leading.address}"])
    assert b"Subject\0hi\0" in plain.data_of("header")
    assert b"Subject\0 hi\0" in leading.data_of("header")


def test_steps_left_out_and_unanswered_as_negotiated(milter_factory):
    milter = milter_factory(protocol=NOHELO | NR_RCPT, script={"rcpt": b""})
    result = session([f"milter test {milter.address}"])
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert "helo" not in milter.steps()
    assert "rcpt" in milter.steps()


def test_a_milter_listed_after_rcpt_ok_still_gets_every_step_in_order(milter_factory):
    milter = milter_factory()
    lines = ["EHLO client.test", "MAIL FROM:<a@example.com>", "RCPT TO:<x@example.test>", "RCPT TO:<y@example.test>",
             "DATA", *MESSAGE, ".", "QUIT"]
    result = run_session(lines, config={"plugins": ["rcpt_ok", f"milter late {milter.address}"],
                                        "rcpthosts": ["example.test"]}, capture_queue=True)
    assert result.codes() == [220, 250, 250, 250, 250, 354, 250, 221]
    assert milter.steps()[:6] == ["connect", "helo", "mail", "rcpt", "rcpt", "data"]
    assert milter.data_of("rcpt") == [b"<x@example.test>\0", b"<y@example.test>\0"]


def test_symlist_limits_the_macros_sent(milter_factory):
    symlist = struct.pack("!I", 2) + b"{mail_addr}\0"
    milter = milter_factory(symlist=symlist)
    session([f"milter test {milter.address}"])
    assert milter.macros(b"M") == {"{mail_addr}": "a@example.com"}


def test_unix_socket(milter_factory):
    milter = milter_factory(unix=True, script={"rcpt": packet(b"r")})
    result = session([f"milter test {milter.address}"])
    assert result.replies()[3] == (550, ["Command rejected"])


# --------------------------------------------------------------------------
# Replies at the step where the milter gave them
# --------------------------------------------------------------------------


def test_reject_at_connect_ends_the_session(milter_factory):
    milter = milter_factory(script={"connect": packet(b"r")})
    result = session([f"milter test {milter.address}"])
    assert result.codes() == [554]


def test_accept_at_connect_ends_filtering_for_the_session(milter_factory):
    milter = milter_factory(script={"connect": ACCEPT})
    result = session([f"milter test {milter.address}"])
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert milter.steps() in (["connect"], ["connect", "quit"])


def test_discard_at_connect_discards_every_message(milter_factory):
    milter = milter_factory(script={"connect": packet(b"d")})
    lines = ["EHLO client.test", *(["MAIL FROM:<a@example.com>", "RCPT TO:<x@example.test>", "DATA", *MESSAGE, "."]
                                   * 2), "QUIT"]
    result = run_session(lines, config={"plugins": [f"milter test {milter.address}", "rcpt_ok"],
                                        "rcpthosts": ["example.test"]}, capture_queue=True)
    assert result.codes() == [220, 250, 250, 250, 354, 250, 250, 250, 354, 250, 221]
    assert result.queued == []


def test_tempfail_at_helo(milter_factory):
    milter = milter_factory(script={"helo": packet(b"t")})
    result = session([f"milter test {milter.address}"])
    assert result.replies()[1] == (451, ["Service unavailable - try again later"])


def test_reject_at_mail_aborts_and_the_next_message_goes_through(milter_factory):
    answers = iter([packet(b"r"), CONTINUE])
    milter = milter_factory(script={"mail": lambda data: next(answers)})
    lines = ["EHLO client.test", "MAIL FROM:<a@example.com>", "MAIL FROM:<b@example.com>",
             "RCPT TO:<x@example.test>", "DATA", *MESSAGE, ".", "QUIT"]
    result = run_session(lines, config={"plugins": [f"milter test {milter.address}", "rcpt_ok"],
                                        "rcpthosts": ["example.test"]}, capture_queue=True)
    assert result.codes() == [220, 250, 550, 250, 250, 354, 250, 221]
    assert milter.steps()[2:4] == ["mail", "abort"]
    assert result.queued[0].sender == "b@example.com"


def test_replycode_multiline_with_enhanced_code_at_rcpt_rejects_only_that_recipient(milter_factory):
    def answer(data: bytes) -> bytes:
        if data.startswith(b"<bad@"):
            return packet(b"y", b"550-5.1.1 No such user here\r\n550 5.1.1 Really not\0")
        return CONTINUE
    milter = milter_factory(script={"rcpt": answer})
    result = session([f"milter test {milter.address}"], rcpts=("bad@example.test", "x@example.test"),
                     config={"enhancedstatuscodes": ["1"]})
    assert result.replies()[3] == (550, ["5.1.1 No such user here", "5.1.1 Really not"])
    assert result.queued[0].recipients == ["x@example.test"]


def test_tempfail_at_data(milter_factory):
    milter = milter_factory(script={"data": packet(b"t")})
    result = session([f"milter test {milter.address}"])
    assert 451 in result.codes() and not result.queued


def test_reject_at_a_header_and_at_end_of_message(milter_factory):
    def header(data: bytes) -> bytes:
        return packet(b"r") if data.startswith(b"Subject\0") else CONTINUE
    milter = milter_factory(script={"header": header})
    result = session([f"milter test {milter.address}"])
    assert result.replies()[-2] == (550, ["Message content rejected"]) and not result.queued
    assert "body" not in milter.steps()

    milter = milter_factory(script={"eom": packet(b"y", b"554 5.7.1 Spam message rejected\0")})
    result = session([f"milter test {milter.address}"])
    assert result.replies()[-2] == (554, ["Spam message rejected"]) and not result.queued


def test_accept_at_mail_stops_filtering_that_message_only(milter_factory):
    milter = milter_factory(script={"mail": ACCEPT})
    result = session([f"milter test {milter.address}"])
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert "rcpt" not in milter.steps() and "eom" not in milter.steps()


def test_discard_at_rcpt_answers_250_and_queues_nothing(milter_factory):
    milter = milter_factory(script={"rcpt": packet(b"d")})
    result = session([f"milter test {milter.address}"])
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert result.queued == []


def test_discard_at_end_of_message(milter_factory):
    milter = milter_factory(script={"eom": packet(b"d")})
    result = session([f"milter test {milter.address}"])
    assert result.codes()[-2] == 250 and result.queued == []


def test_skip_stops_the_body_and_progress_extends_the_wait(milter_factory):
    big = ["From: a@example.com", "Subject: big", "", *(["x" * 999] * 300)]
    milter = milter_factory(protocol=SKIP, script={
        "body": packet(b"s"),
        "eom": ("sleep", 0.3, b"".join([packet(b"p")] * 1) + packet(b"a")),
    })
    result = session([f"milter test {milter.address} eom_timeout 1"], message=big)
    assert result.codes()[-2] == 250
    assert milter.steps().count("body") == 1


# --------------------------------------------------------------------------
# Modifications at end of message
# --------------------------------------------------------------------------


def test_every_header_change_is_applied(milter_factory):
    eom = b"".join([
        packet(b"h", nul("X-Added", "one")),
        packet(b"i", struct.pack("!I", 0) + nul("X-Top", "first\r\n\tfolded")),
        packet(b"m", struct.pack("!I", 1) + nul("Subject", "changed")),
        packet(b"m", struct.pack("!I", 1) + nul("To", "")),
        packet(b"h", nul("X-Smuggle", "a\r\nBcc: evil@example.org")),
        ACCEPT,
    ])
    milter = milter_factory(script={"eom": eom})
    text = queued_text(session([f"milter test {milter.address}"]))
    header = text.split("\n\n")[0]
    assert header.startswith("X-Top: first\n\tfolded\n")
    assert "\nSubject: changed\n" in header and "Subject: hi" not in header
    assert "\nTo:" not in header
    assert header.endswith("X-Added: one\nX-Smuggle: a\n\tBcc: evil@example.org")
    assert "\nBcc:" not in header


def test_sender_and_recipient_changes_and_quarantine(milter_factory):
    eom = b"".join([
        packet(b"e", nul("<new@example.com>")),
        packet(b"+", nul("<added@example.org>")),
        packet(b"2", nul("<other@example.org>", "NOTIFY=NEVER")),
        packet(b"-", nul("<x@example.test>")),
        packet(b"q", nul("looks odd")),
        CONTINUE,
    ])
    milter = milter_factory(script={"eom": eom})
    result = session([f"milter test {milter.address}"], rcpts=("x@example.test", "y@example.test"))
    queued = result.queued[0]
    assert queued.sender == "new@example.com"
    assert queued.recipients == ["y@example.test", "added@example.org", "other@example.org"]
    assert any("quarantine requested: looks odd" in line for line in result.log)


def test_replaced_body_is_spooled_and_queued(milter_factory):
    new_body = b"".join(b"replacement line %06d\r\n" % n for n in range(200_000))  # 4.6 MB in 64 KB packets
    chunks = [new_body[i:i + 65535] for i in range(0, len(new_body), 65535)]
    milter = milter_factory(script={"eom": b"".join(packet(b"b", chunk) for chunk in chunks) + ACCEPT})
    text = queued_text(session([f"milter test {milter.address}"]))
    head, body = text.split("\n\n", 1)
    assert "Subject: hi" in head
    assert body.encode() == new_body.replace(b"\r\n", b"\n")


def test_changes_not_negotiated_are_ignored(milter_factory):
    eom = packet(b"h", nul("X-Added", "one")) + packet(b"e", nul("<new@example.com>")) + ACCEPT
    milter = milter_factory(actions=0x01, script={"eom": eom})
    result = session([f"milter test {milter.address}"])
    assert result.queued[0].sender == "a@example.com"
    assert "X-Added: one" in queued_text(result)


def test_two_milters_in_a_row_the_second_sees_the_first_ones_header(milter_factory):
    first = milter_factory(script={"eom": packet(b"h", nul("X-First", "yes")) + ACCEPT})
    second = milter_factory(script={"eom": packet(b"h", nul("X-Second", "yes")) + ACCEPT})
    text = queued_text(session([f"milter one {first.address}", f"milter two {second.address}"]))
    assert "X-First: yes" in text and "X-Second: yes" in text
    assert any(data.startswith(b"X-First\0") for data in second.data_of("header"))


# --------------------------------------------------------------------------
# A milter that is down, slow, talks garbage or drops the connection
# --------------------------------------------------------------------------


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("action, code", [("tempfail", 451), ("reject", 550), ("accept", 250)])
def test_milter_down_default_action(action, code):
    result = session([f"milter gone {closed_port()} default_action {action}"])
    assert result.codes()[:3] == [220, 250, code]
    assert bool(result.queued) == (action == "accept")
    assert any("milter gone" in line and "failed at" in line for line in result.log)


def test_slow_step_times_out_with_the_default_action(milter_factory):
    milter = milter_factory(script={"rcpt": ("sleep", 1.5, CONTINUE)})
    started = time.monotonic()
    result = session([f"milter slow {milter.address} command_timeout 0.3"])
    assert time.monotonic() - started < 1.4
    assert result.replies()[3][0] == 451 and not result.queued
    assert any("timed out" in line for line in result.log)


@pytest.mark.parametrize("step, option", [("body", "body_timeout"), ("eom", "eom_timeout"),
                                          ("connect", "command_timeout")])
def test_each_step_has_its_own_time_out(milter_factory, step, option):
    milter = milter_factory(script={step: ("sleep", 1.5, ACCEPT if step == "eom" else CONTINUE)})
    started = time.monotonic()
    result = session([f"milter slow {milter.address} {option} 0.3 default_action reject"])
    assert time.monotonic() - started < 1.4
    assert 550 in result.codes() and not result.queued


def test_protocol_garbage_is_a_failure(milter_factory):
    milter = milter_factory(script={"mail": b"HTTP/1.1 400 Bad Request\r\n\r\n"})
    result = session([f"milter junk {milter.address} default_action reject"])
    assert result.replies()[2][0] == 550 and not result.queued
    assert any("protocol garbage" in line for line in result.log)


def test_connection_dropped_at_end_of_message(milter_factory):
    milter = milter_factory(script={"eom": "close"})
    result = session([f"milter drop {milter.address}"])
    assert result.codes()[-2] == 451 and not result.queued
    assert any("closed the connection" in line for line in result.log)


def test_bad_arguments_refuse_to_load():
    result = session(["milter onlyaname"])
    assert result.codes() == [421]
    result = session(["milter x 127.0.0.1:99999"])
    assert result.codes() == [421]


def test_parse_replycode_and_addresses():
    verdict = parse_replycode("452-4.3.1 first\r\n452 4.3.1 second")
    assert (verdict.code, verdict.esc, verdict.lines) == (452, "4.3.1", ["first", "second"])
    assert MilterClient("inet:8891@localhost").target == ("localhost", 8891)
    assert MilterClient("8891").target == ("127.0.0.1", 8891)  # the Perl plugin's `milter NAME PORT`
    assert MilterClient("bmcluster:5513").target == ("bmcluster", 5513)


def test_authenticated_user_in_the_mail_macros(milter_factory):
    import base64

    milter = milter_factory()
    plain = base64.b64encode(b"\0user@example.test\0secret").decode()
    lines = ["EHLO client.test", f"AUTH PLAIN {plain}", "MAIL FROM:<a@example.com>", "RCPT TO:<x@example.test>",
             "DATA", *MESSAGE, ".", "QUIT"]
    result = run_session(lines, config={"plugins": ["auth/auth_flat_file", f"milter test {milter.address}", "rcpt_ok"],
                                        "rcpthosts": ["example.test"], "flat_auth_pw": ["user@example.test:secret"]},
                         capture_queue=True)
    assert result.codes()[2] == 235 and result.queued
    assert milter.macros(b"M")["{auth_authen}"] == "user@example.test"
    assert milter.macros(b"M")["{auth_type}"] == "PLAIN"


def test_rset_aborts_the_message_and_the_milter_sees_the_next_one(milter_factory):
    milter = milter_factory()
    lines = ["EHLO client.test", "MAIL FROM:<a@example.com>", "RCPT TO:<x@example.test>", "RSET",
             "MAIL FROM:<b@example.com>", "RCPT TO:<x@example.test>", "DATA", *MESSAGE, ".", "QUIT"]
    result = run_session(lines, config={"plugins": [f"milter test {milter.address}", "rcpt_ok"],
                                        "rcpthosts": ["example.test"]}, capture_queue=True)
    assert result.codes() == [220, 250, 250, 250, 250, 250, 250, 354, 250, 221]
    assert milter.steps()[2:6] == ["mail", "rcpt", "abort", "mail"]
    assert milter.connections == 1


def test_plugin_time_limit_in_the_middle_of_a_conversation(milter_factory):
    milter = milter_factory(script={"eom": ("sleep", 1.0, ACCEPT)})
    lines = ["EHLO client.test", "MAIL FROM:<a@example.com>", "RCPT TO:<x@example.test>", "DATA", *MESSAGE, ".",
             "MAIL FROM:<b@example.com>", "QUIT"]
    result = run_session(lines, config={"plugins": [f"milter test {milter.address} eom_timeout 5", "rcpt_ok"],
                                        "rcpthosts": ["example.test"], "plugin_timeout": ["0.3"]},
                         capture_queue=True)
    codes = result.codes()
    assert codes[5] == 451 and not result.queued
    assert codes[6] == 250  # the next MAIL: a new connection to the milter, nothing out of step
    assert milter.connections == 2


# --------------------------------------------------------------------------
# Real milters
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def opendkim_milter():
    from components_filters import opendkim
    with opendkim() as daemon:
        yield daemon


@pytest.mark.components
def test_opendkim_signs_and_the_signature_verifies(opendkim_milter):
    import dkim

    message = ["From: a@example.com", "To: x@example.test", "Subject: signed", " and folded", "", "body", "", ""]
    result = session([f"milter opendkim {opendkim_milter.address}"], message=message)
    queued = result.queued[0].message
    assert queued.startswith(b"DKIM-Signature:")
    record = opendkim_milter.dns_record
    assert dkim.verify(queued.replace(b"\n", b"\r\n"), dnsfunc=lambda name, timeout=5: record)
    tampered = queued.replace(b"body", b"b0dy").replace(b"\n", b"\r\n")
    assert not dkim.verify(tampered, dnsfunc=lambda name, timeout=5: record)


@pytest.mark.components
def test_clamav_milter_rejects_eicar_with_its_reply():
    from components import EICAR, clamd
    from components_filters import clamav_milter

    with clamd() as scanner, clamav_milter(scanner.socket_path) as milter:
        result = session([f"milter clamav {milter.address}"], message=["Subject: virus", "", EICAR])
        code, lines = result.replies()[-2]
        assert code == 550 and re.search(r"Rejecting harmful e-mail: Test\.EICAR-NDB\S* found\.", lines[0])
        assert not result.queued
        lines = ["EHLO client.test", "MAIL FROM:<a@example.com>", "RCPT TO:<x@example.test>", "DATA",
                 "Subject: virus", "", EICAR, ".", "MAIL FROM:<a@example.com>", "RCPT TO:<x@example.test>", "DATA",
                 *MESSAGE, ".", "QUIT"]
        both = run_session(lines, config={"plugins": [f"milter clamav {milter.address}", "rcpt_ok"],
                                          "rcpthosts": ["example.test"]}, capture_queue=True)
        assert both.codes() == [220, 250, 250, 250, 354, 550, 250, 250, 354, 250, 221]
        assert "X-Virus-Status: Clean" in queued_text(both)


@pytest.fixture(scope="module")
def rspamd_daemon():
    from components_filters import rspamd
    with rspamd() as daemon:
        yield daemon


@pytest.mark.components
def test_rspamd_proxy_in_milter_mode_rejects_gtube_and_changes_headers(rspamd_daemon):
    from components import GTUBE

    address = rspamd_daemon.milter_address
    result = session([f"milter rspamd {address}"], message=["Subject: spam", "", GTUBE],
                     config={"enhancedstatuscodes": ["1"]})
    assert result.replies()[-2] == (554, ["5.7.1 Gtube pattern"]) and not result.queued
    message = ["From: a@example.com", "Subject: ham", "X-Test-Milter: 1", "X-Remove-Me: please", "", "hello"]
    text = queued_text(session([f"milter rspamd {address}"], message=message))
    assert "X-Rspamd-Test: added" in text and "X-Remove-Me" not in text
