"""The hook contract: bad values, DONE without a reply, time limits, explicit Replies, queue_post's outcome.

Each test drives a whole in-process session with small test plugins
(t/plugins_for_tests: ret, bad, sleepy, reply) and checks what the client
sees, what was queued and what the log says.
"""

import os
import time

import pytest

from qpsmtpd.replies import DONE_OWNED, TABLE
from qpsmtpd.testing import REPO_DIR, run_session

TEST_PLUGINS = os.path.join(os.path.dirname(__file__), "plugins_for_tests")
PLUGIN_DIRS = [TEST_PLUGINS, os.path.join(REPO_DIR, "plugins")]
BASE = {"me": "mx.example.test", "rcpthosts": ["example.test"], "loglevel": "6"}

HELO = ["HELO client.test"]
MAIL = HELO + ["MAIL FROM:<a@b.test>"]
RCPT = MAIL + ["RCPT TO:<x@example.test>"]
DATA = RCPT + ["DATA", "Subject: hi", "", "body", "."]
FAULT = (451, ["Internal error - try again later"])

# Where a deciding hook's reply is: the client lines that reach it, the reply index.
REACH = {
    "connect": ([], 0), "helo": (HELO, 1), "ehlo": (["EHLO client.test"], 1), "mail": (MAIL, 2),
    "rcpt": (RCPT, 3), "data": (RCPT + ["DATA"], 4), "data_headers_end": (DATA, 5),
    "data_post_headers": (DATA, 5), "data_post": (DATA, 5), "queue_pre": (DATA, 5), "queue": (DATA, 5),
    "unrecognized_command": (["FOO"], 1), "noop": (["NOOP"], 1), "vrfy": (["VRFY x"], 1), "help": (["HELP"], 1),
}
DECIDING = sorted(REACH)


def session(plugins, lines, extra=None, capture=True):
    config = dict(BASE, plugins=plugins + ["rcpt_ok"], **(extra or {}))
    return run_session(lines + ["QUIT"], config=config, plugin_dirs=PLUGIN_DIRS, capture_queue=capture)


def assert_fault(result, hook, index, *log_words):
    replies = result.replies()
    assert replies[index] == FAULT, replies
    assert result.queued == []
    if hook != "connect":
        assert replies[-1][0] == 221, replies  # the session went on
    line = next((line for line in result.log if "FATAL PLUGIN ERROR" in line), "")
    for word in log_words:
        assert word in line, result.log


# -- bad return values ----------------------------------------------------------
@pytest.mark.parametrize("hook", DECIDING)
@pytest.mark.parametrize("kind", ["string", "smtpcode", "bool", "object", "empty", "bigint", "badreply"])
def test_a_value_that_is_not_a_result_fails_closed(hook, kind):
    lines, index = REACH[hook]
    result = session([f"bad {hook} {kind}"], lines)
    assert_fault(result, hook, index, "[bad]", f"hook {hook}")


def test_deny_as_a_string_from_mail_is_a_451_not_a_250():
    """`return "DENY", "no"` used to be logged as 901 and answered 250 sender OK."""
    result = session(["bad mail string"], MAIL + ["RCPT TO:<x@example.test>"])
    assert result.replies()[2] == FAULT
    assert result.replies()[3] == (503, ["Use MAIL before RCPT"])  # no sender was set
    assert any("returned ('DENY', 'no'), which is not a result" in line for line in result.log)


def test_smtp_code_instead_of_a_result_from_rcpt_adds_no_recipient():
    result = session(["bad rcpt smtpcode"], RCPT + ["DATA"])
    assert result.replies()[3] == FAULT
    assert result.replies()[4] == (503, ["RCPT first"])


def test_bad_values_in_hooks_without_a_reply_are_logged_and_skipped():
    result = session(["bad reset_transaction string", "bad disconnect object"], DATA)
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert len(result.queued) == 1
    assert any("hook reset_transaction" in line and "not a result" in line for line in result.log)


# -- DONE without a reply -------------------------------------------------------------
@pytest.mark.parametrize("hook", sorted(DONE_OWNED))
def test_done_without_a_reply_is_answered_451(hook):
    lines, index = REACH[hook]
    result = session([f"ret {hook} DONE"], lines)
    replies = result.replies()
    assert replies[index] == FAULT, replies
    assert result.queued == []
    assert any(f"returned DONE from hook {hook} without a reply" in line for line in result.log), result.log


def test_done_with_a_reply_is_left_alone(tmp_path):
    (tmp_path / "answers.py").write_text(
        "from qpsmtpd.constants import DONE\n"
        "def hook_data_post(self, transaction):\n"
        "    self.qp.respond(554, 'kept by the plugin')\n"
        "    return DONE\n")
    result = run_session(DATA + ["QUIT"], config=dict(BASE, plugins=["answers", "rcpt_ok"]),
                         plugin_dirs=[str(tmp_path)] + PLUGIN_DIRS, capture_queue=True)
    assert result.replies()[5] == (554, ["kept by the plugin"])
    assert result.codes()[-1] == 221 and result.queued == []


def test_done_from_quit_without_a_reply_still_says_goodbye():
    result = session(["ret quit DONE"], HELO)
    assert result.codes() == [220, 250, 221]


# -- time limits ------------------------------------------------------------------------
@pytest.mark.parametrize("hook", DECIDING)
def test_a_hook_past_its_time_limit_is_a_fault(hook, tmp_path):
    lines, index = REACH[hook]
    marker = tmp_path / "cleaned"
    started = time.monotonic()
    limit_item = {"queue_timeout": "0.2"} if hook == "queue" else {"plugin_timeout": "0.2"}
    result = session([f"sleepy {hook} 5 {marker}"], lines, extra=limit_item)
    assert time.monotonic() - started < 3
    assert_fault(result, hook, index, "[sleepy]", f"hook {hook} ran past its time limit of 0.2s")
    assert marker.read_text() == "cleaned up\n"  # the plugin was told, and could clean up


def test_per_plugin_time_limit_overrides_the_default():
    fast = session(["sleepy rcpt 0.3"], RCPT, extra={"plugin_timeout": ["0.1", "sleepy 2"]})
    assert fast.replies()[3][0] == 250
    slow = session(["sleepy rcpt 0.3"], RCPT, extra={"plugin_timeout": ["2", "sleepy 0.1"]})
    assert slow.replies()[3] == FAULT


def test_zero_means_no_limit():
    result = session(["sleepy rcpt 0.3"], RCPT, extra={"plugin_timeout": "0"})
    assert result.replies()[3][0] == 250


def test_a_bad_plugin_timeout_line_is_logged_and_the_default_used():
    result = session(["sleepy rcpt 0.05"], RCPT, extra={"plugin_timeout": "soon"})
    assert result.replies()[3][0] == 250
    assert any("plugin_timeout" in line and "soon" in line for line in result.log)


def test_the_timer_is_off_between_hooks():
    """A limit shorter than the whole session: only time spent inside hooks counts."""
    result = session(["sleepy rcpt 0.05", "sleepy:1 data_post 0.05"], DATA, extra={"plugin_timeout": "0.3"})
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    time.sleep(0.5)  # no stray SIGALRM arrives after the session


# -- explicit replies ---------------------------------------------------------------------
@pytest.mark.parametrize("hook,code,esc,text,expected,goes_on", [
    ("mail", 451, "4.7.1", "Slow down", (451, ["Slow down"]), True),
    ("rcpt", 250, "-", "welcome aboard", (250, ["welcome aboard"]), True),
    ("rcpt", 550, "5.1.1", "No such user", (550, ["No such user"]), True),
    ("rcpt", 421, "-", "too busy", (421, ["too busy"]), False),
    ("connect", 554, "-", "go away", (554, ["go away"]), False),
    ("data_post", 554, "5.7.1", "spam", (554, ["spam"]), True),
    ("queue", 250, "-", "Queued as 42", (250, ["Queued as 42"]), True),
    ("vrfy", 550, "-", "no", (550, ["no"]), True),
])
def test_explicit_reply(hook, code, esc, text, expected, goes_on):
    lines, index = REACH[hook]
    result = session([f"reply {hook} {code} {esc} {text}"], lines, capture=hook != "queue")
    replies = result.replies()
    assert replies[index] == expected, replies
    assert (replies[-1][0] == 221) == goes_on, replies


def test_a_2xx_reply_from_rcpt_adds_the_recipient():
    result = session(["reply rcpt 250 - yes"], DATA)
    assert result.replies()[3] == (250, ["yes"]) and len(result.queued) == 1


def test_a_4xx_reply_from_data_post_queues_nothing():
    result = session(["reply data_post 451 4.7.1 later"], DATA + ["NOOP"])
    assert result.replies()[5] == (451, ["later"]) and result.queued == []


@pytest.mark.parametrize("hook,code", [("data_post", 250), ("helo", 250), ("connect", 220), ("data", 354),
                                       ("rcpt", 999), ("mail", 550)])
def test_a_reply_the_hook_cannot_give_is_a_fault(hook, code):
    lines, index = REACH[hook]
    esc = "4.0.0" if code == 550 else "-"  # 550 with a 4.x.x code does not fit
    result = session([f"reply {hook} {code} {esc} nope"], lines)
    assert_fault(result, hook, index, "[reply]", f"hook {hook}")


def test_enhanced_status_codes_when_enabled():
    result = session(["reply mail 451 4.7.1 Slow down"], MAIL, extra={"enhancedstatuscodes": "1"})
    assert "451 4.7.1 Slow down" in result.lines()
    plain = session(["ret rcpt DENY"], RCPT, extra={"enhancedstatuscodes": "1"})
    assert "550 5.7.1 relaying denied" in plain.lines()
    off = session(["reply mail 451 4.7.1 Slow down"], MAIL)
    assert "451 Slow down" in off.lines()


# -- queue_post sees the outcome ---------------------------------------------------------
WATCH_QUEUE_POST = (
    "from qpsmtpd.constants import LOGWARN\n"
    "def hook_queue_post(self, transaction):\n"
    "    outcome = transaction.notes.get('queue_result')\n"
    "    self.log(LOGWARN, f'outcome {outcome!r} rcpts={len(transaction.recipients)}')\n")


def _outcome_line(result):
    return next(line for line in result.log if "outcome " in line)


def test_queue_post_sees_a_queued_message(tmp_path):
    (tmp_path / "watch.py").write_text(WATCH_QUEUE_POST)
    result = run_session(DATA + ["QUIT"], config=dict(BASE, plugins=["watch", "rcpt_ok"]),
                         plugin_dirs=[str(tmp_path)] + PLUGIN_DIRS, capture_queue=True)
    line = _outcome_line(result)
    assert "'queued': True" in line and "'code': 250" in line and "queue::capture" in line
    assert "rcpts=1" in line  # the transaction is still there


def test_queue_post_sees_a_failure(tmp_path):
    (tmp_path / "watch.py").write_text(WATCH_QUEUE_POST)
    result = run_session(DATA + ["QUIT"], config=dict(BASE, plugins=["watch", "ret queue DENYSOFT", "rcpt_ok"]),
                         plugin_dirs=[str(tmp_path)] + PLUGIN_DIRS)
    line = _outcome_line(result)
    assert "'queued': False" in line and "'code': 452" in line and "'plugin': 'ret'" in line


# -- the decision line -----------------------------------------------------------------------
def test_each_refusal_is_one_log_line_with_plugin_ip_and_reply():
    result = session(["ret rcpt DENY No such user"], RCPT)
    assert any(line.endswith("(rcpt) ret: reject 192.0.2.1: 550 No such user") for line in result.log), result.log
    soft = session(["ret mail DENYSOFT"], MAIL)
    assert any("(mail) ret: defer 192.0.2.1: 450 <a@b.test>, temporarily denied" in line for line in soft.log)


def test_the_decision_line_is_kept_at_lognotice_without_the_command_trace():
    result = session(["ret rcpt DENY nope"], RCPT, extra={"loglevel": "5"})
    assert any("reject 192.0.2.1: 550 nope" in line for line in result.log)
    assert not any("dispatching" in line for line in result.log)


def test_every_table_hook_has_a_default_text_or_takes_the_plugins():
    for hook, rules in TABLE.items():
        for rule in rules.values():
            assert rule.code is None or 200 <= rule.code <= 599


def test_an_auth_failure_is_one_decision_line(tmp_path):
    import base64
    plain = base64.b64encode(b"\0joe@example.test\0wrong").decode()
    result = run_session(["EHLO client.test", f"AUTH PLAIN {plain}", "QUIT"],
                         config=dict(BASE, plugins=["auth/authdeny"]), plugin_dirs=PLUGIN_DIRS)
    assert result.replies()[2][0] == 535
    assert any("(auth) auth::authdeny: reject 192.0.2.1: 535 PLAIN authentication failed for joe@example.test"
               in line for line in result.log), result.log


def test_enhancedstatuscodes_advertised_only_when_enabled():
    on = session([], ["EHLO client.test"], extra={"enhancedstatuscodes": "1"})
    assert "ENHANCEDSTATUSCODES" in on.replies()[1][1]
    off = session([], ["EHLO client.test"])
    assert "ENHANCEDSTATUSCODES" not in off.replies()[1][1]


@pytest.mark.parametrize("hook,line,index", [("unrecognized_command", "XYZZY", 1), ("noop", "NOOP", 1),
                                             ("help", "HELP", 1), ("vrfy", "VRFY x", 1)])
def test_a_2xx_reply_is_sent_as_given_where_the_engine_has_nothing_to_record(hook, line, index):
    """E.g. a plugin implementing a new command answers it with Reply(250, ...)."""
    result = session([f"reply {hook} 252 - done by the plugin"], [line, "RSET"])
    assert result.replies()[index] == (252, ["done by the plugin"]), result.replies()
    assert result.replies()[index + 1] == (250, ["OK"])  # the session goes on, in step
