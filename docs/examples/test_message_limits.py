"""Tests of the example plugin of docs/writing-plugins.md, written with the project's harness.

t/test_writing_plugins_doc.py runs them, so the guide cannot rot:
`python3 -m pytest -q t/test_writing_plugins_doc.py` (t/conftest.py puts lib/ on sys.path;
your own tests need the same: `qpsmtpd` must be the package of lib/, not qpsmtpd.py).
"""

import os

from qpsmtpd.testing import REPO_DIR, run_session

PLUGIN_DIRS = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"),
               os.path.join(REPO_DIR, "plugins")]
CONFIG = {"me": "mx.example.test", "rcpthosts": ["example.test"], "loglevel": "6"}


def session(plugin_line, lines):
    return run_session(lines, config=dict(CONFIG, plugins=[plugin_line, "rcpt_ok"]),
                       plugin_dirs=PLUGIN_DIRS, capture_queue=True)


def test_recipients_over_the_limit_are_deferred():
    result = session("message_limits max_rcpts 2",
                     ["EHLO client.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>",
                      "RCPT TO:<y@example.test>", "RCPT TO:<z@example.test>", "QUIT"])
    assert result.codes()[-2:] == [452, 221]
    assert result.replies()[-2] == (452, ["Too many recipients, send the rest later"])


def test_enhanced_status_code_when_enabled():
    result = run_session(["EHLO client.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>",
                          "RCPT TO:<y@example.test>", "QUIT"],
                         config=dict(CONFIG, plugins=["message_limits max_rcpts 1", "rcpt_ok"],
                                     enhancedstatuscodes="1"),
                         plugin_dirs=PLUGIN_DIRS)
    assert result.replies()[-2] == (452, ["4.5.3 Too many recipients, send the rest later"])


def test_over_limit_perm_refuses():
    result = session("message_limits max_rcpts 1 over_limit perm",
                     ["HELO client.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>",
                      "RCPT TO:<y@example.test>", "QUIT"])
    assert result.replies()[-2] == (550, ["Too many recipients"])


def test_blocked_subject_is_refused_and_not_queued():
    result = session("message_limits blocked_words lottery,winner",
                     ["HELO client.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "DATA",
                      "Subject: You are a WINNER", "", "body", ".", "QUIT"])
    assert result.replies()[-2] == (552, ["Message refused: subject"])  # DENY at data_post: 552
    assert result.queued == []


def test_queue_post_sees_the_outcome():
    result = session("message_limits",
                     ["HELO client.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "DATA",
                      "Subject: hello", "", "body", ".", "QUIT"])
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert len(result.queued) == 1
    assert any("queued=True by queue::capture: 250 Queued! (test harness) (1 recipients)" in line
               for line in result.log)


def test_a_bad_argument_is_reported_once():
    result = session("message_limits max_rcpts many", ["QUIT"])
    assert result.codes() == [220, 221]  # loads with the default, and says so
    assert len([line for line in result.log if "max_rcpts: 'many' is not a whole number" in line]) == 1
