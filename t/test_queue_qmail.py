"""queue/qmail-queue against the qmail-queue test double (qmail itself cannot be installed here)."""

from __future__ import annotations

import json
import os
import re

import pytest

from components import QMAIL_QUEUE_DOUBLE, qq_double_messages
from qpsmtpd.testing import run_session

CONFIG = {"plugins": ["rcpt_ok", "queue/qmail-queue"], "rcpthosts": ["example.test"], "me": "mx.example.test"}
CLIENT_MESSAGE = ["Message-Id: <abc@client.test>", "Subject: queue test", "", "line one", "..leading dot", "last"]
SESSION = (["EHLO client.test", "MAIL FROM:<alice@client.test>", "RCPT TO:<bob@example.test>",
            "RCPT TO:<carol@example.test>", "DATA"] + CLIENT_MESSAGE + [".", "QUIT"])

# exit code -> (reply code, text): qmail-smtpd's table
EXPECTED = {
    11: (554, "envelope address too long for qq (#5.1.3)"),
    31: (554, "mail server permanently rejected message (#5.3.0)"),
    12: (554, "qq permanent problem (#5.3.0)"),
    40: (554, "qq permanent problem (#5.3.0)"),
    51: (451, "qq out of memory (#4.3.0)"),
    52: (451, "qq timeout (#4.3.0)"),
    53: (451, "qq write error or disk full (#4.3.0)"),
    54: (451, "qq read error (#4.3.0)"),
    55: (451, "qq unable to read configuration (#4.3.0)"),
    56: (451, "qq trouble making network connection (#4.3.0)"),
    61: (451, "qq trouble in home directory (#4.3.0)"),
    62: (451, "qq trouble creating files in queue (#4.3.0)"),
    63: (451, "qq trouble creating files in queue (#4.3.0)"),
    64: (451, "qq trouble creating files in queue (#4.3.0)"),
    65: (451, "qq trouble creating files in queue (#4.3.0)"),
    66: (451, "qq trouble creating files in queue (#4.3.0)"),
    71: (451, "mail server temporarily rejected message (#4.3.0)"),
    72: (451, "connection to mail server timed out (#4.4.1)"),
    73: (451, "connection to mail server rejected (#4.4.1)"),
    74: (451, "communication with mail server failed (#4.4.2)"),
    81: (451, "qq internal bug (#4.3.0)"),
    91: (451, "qq internal bug (#4.3.0)"),
    115: (554, "envelope address too long for qq (#5.1.3)"),
    120: (451, "unable to exec qq (#4.3.0)"),
    1: (451, "qq temporary problem (#4.3.0)"),
    10: (451, "qq temporary problem (#4.3.0)"),
    41: (451, "qq temporary problem (#4.3.0)"),
    99: (451, "qq temporary problem (#4.3.0)"),
    255: (451, "qq temporary problem (#4.3.0)"),
}


@pytest.fixture
def qq_dir(tmp_path):
    return str(tmp_path)


def run(qq_dir: str, lines=SESSION, **env: str):
    log = os.path.join(qq_dir, "calls.log")
    environment = {"QMAILQUEUE": str(QMAIL_QUEUE_DOUBLE), "QQ_DOUBLE_DIR": qq_dir, "QQ_DOUBLE_LOG": log, **env}
    return run_session(lines, config=CONFIG, env=environment)


def calls(qq_dir: str) -> list[dict]:
    path = os.path.join(qq_dir, "calls.log")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def test_success_stores_exact_message_and_envelope(qq_dir):
    result = run(qq_dir)
    code, text = result.replies()[-2]
    assert code == 250
    assert re.fullmatch(r"Queued! \d+ qp \d+ <abc@client\.test>", text[0]), text
    stored = qq_double_messages(qq_dir)
    assert len(stored) == 1
    message = stored[0]
    assert message.sender == "alice@client.test"
    assert message.recipients == ["bob@example.test", "carol@example.test"]
    client_part = "\n".join(CLIENT_MESSAGE).replace("\n..", "\n.").encode() + b"\n"
    assert message.message.endswith(b"\n" + client_part)
    assert message.message.startswith(b"Authentication-Results: mx.example.test; auth=none\nReceived: from ")
    assert b"\r" not in message.message
    pid = int(text[0].split()[3])
    assert calls(qq_dir)[0]["pid"] == pid


def test_null_sender_and_missing_message_id(qq_dir):
    lines = ["HELO client.test", "MAIL FROM:<>", "RCPT TO:<bob@example.test>", "DATA", "Subject: bounce", "",
             "body", ".", "QUIT"]
    result = run(qq_dir, lines)
    assert re.fullmatch(r"Queued! \d+ qp \d+ <>", result.replies()[-2][1][0])
    stored = qq_double_messages(qq_dir)
    assert [(m.sender, m.recipients) for m in stored] == [("", ["bob@example.test"])]


@pytest.mark.parametrize("exit_code", sorted(EXPECTED))
def test_exit_code_mapping(qq_dir, exit_code):
    result = run(qq_dir, QQ_DOUBLE_EXIT=str(exit_code))
    assert result.replies()[-2] == (EXPECTED[exit_code][0], [EXPECTED[exit_code][1]])
    assert qq_double_messages(qq_dir) == []
    assert [call["code"] for call in calls(qq_dir)] == [exit_code]
    assert result.codes()[-1] == 221


@pytest.mark.parametrize("signal_name", ["KILL", "TERM", "SEGV"])
def test_killed_by_signal(qq_dir, signal_name):
    result = run(qq_dir, QQ_DOUBLE_SIGNAL=signal_name)
    assert result.replies()[-2] == (451, ["qq crashed (#4.3.0)"])
    assert qq_double_messages(qq_dir) == []
    assert len(calls(qq_dir)) == 1


def test_program_missing(qq_dir):
    result = run(qq_dir, QMAILQUEUE=os.path.join(qq_dir, "no-such-qmail-queue"))
    assert result.replies()[-2] == (451, ["unable to exec qq (#4.3.0)"])
    assert qq_double_messages(qq_dir) == []


def test_relative_program_refused(qq_dir):
    result = run(qq_dir, QMAILQUEUE="bin/qmail-queue")
    assert result.replies()[-2] == (451, ["unable to exec qq (#4.3.0)"])


def test_argument_and_qmail_env(qq_dir):
    config = dict(CONFIG, plugins=["rcpt_ok", f"queue/qmail-queue {QMAIL_QUEUE_DOUBLE}"])
    result = run_session(SESSION, config=config, env={"QQ_DOUBLE_DIR": qq_dir})
    assert result.replies()[-2][0] == 250
    assert len(qq_double_messages(qq_dir)) == 1
    # QMAILQUEUE wins over the argument
    result = run_session(SESSION, config=config, env={"QQ_DOUBLE_DIR": qq_dir, "QMAILQUEUE": "/nonexistent/qq"})
    assert result.replies()[-2][0] == 451
    assert len(qq_double_messages(qq_dir)) == 1


def test_default_path_uses_qmail_env(qq_dir):
    bin_dir = os.path.join(qq_dir, "qmail", "bin")
    os.makedirs(bin_dir)
    os.symlink(QMAIL_QUEUE_DOUBLE, os.path.join(bin_dir, "qmail-queue"))
    result = run_session(SESSION, config=CONFIG, env={"QQ_DOUBLE_DIR": qq_dir, "QMAIL": os.path.join(qq_dir, "qmail")})
    assert result.replies()[-2][0] == 250
    assert len(qq_double_messages(qq_dir)) == 1


def test_client_disconnects_mid_data(qq_dir):
    data = "".join(line + "\r\n" for line in SESSION[:5] + CLIENT_MESSAGE[:4])
    result = run(qq_dir, data)
    assert result.codes()[:6] == [220, 250, 250, 250, 250, 354]
    assert 250 not in result.codes()[6:]
    assert qq_double_messages(qq_dir) == []
    assert calls(qq_dir) == []


def test_two_messages_in_one_session_each_stored_once(qq_dir):
    first = SESSION[:-1]
    second = ["MAIL FROM:<dave@client.test>", "RCPT TO:<bob@example.test>", "DATA", "Subject: two", "", "x", ".",
              "QUIT"]
    result = run(qq_dir, first + second)
    assert [code for code in result.codes()] == [220, 250, 250, 250, 250, 354, 250, 250, 250, 354, 250, 221]
    stored = qq_double_messages(qq_dir)
    assert [m.sender for m in stored] == ["alice@client.test", "dave@client.test"]


def test_failure_then_rset_leaves_a_clean_transaction(qq_dir):
    lines = SESSION[:-1] + ["MAIL FROM:<x@client.test>", "DATA", "QUIT"]
    result = run(qq_dir, lines, QQ_DOUBLE_EXIT="31")
    assert result.codes() == [220, 250, 250, 250, 250, 354, 554, 250, 503, 221]
