"""Every hook's return codes and the reply each one gives (qpsmtpd's codes and texts)."""

import os

import pytest

from qpsmtpd.constants import return_code
from qpsmtpd.replies import TABLE
from qpsmtpd.testing import REPO_DIR, run_session

TEST_PLUGINS = os.path.join(os.path.dirname(__file__), "plugins_for_tests")
PLUGIN_DIRS = [TEST_PLUGINS, os.path.join(REPO_DIR, "plugins")]
BASE = {"me": "mx.example.test", "rcpthosts": ["example.test"]}

HELO = ["HELO client.test"]
MAIL = HELO + ["MAIL FROM:<a@b.test>"]
RCPT = MAIL + ["RCPT TO:<x@example.test>"]
DATA = RCPT + ["DATA", "Subject: hi", "", "body", "."]


def session(plugins, lines, capture=True):
    config = dict(BASE, plugins=plugins + ["rcpt_ok"])
    return run_session(lines + ["QUIT"], config=config, plugin_dirs=PLUGIN_DIRS, capture_queue=capture)


def last_reply_after(result, index):
    return result.replies()[index]


# Where each hook's reply is: the client lines that reach it, and the index of its reply.
REACH = {
    "connect": ([], 0), "helo": (HELO, 1), "ehlo": (["EHLO client.test"], 1), "mail": (MAIL, 2),
    "rcpt": (RCPT, 3), "data": (RCPT + ["DATA"], 4), "data_headers_end": (DATA, 5),
    "data_post_headers": (DATA, 5), "data_post": (DATA, 5), "queue_pre": (DATA, 5), "queue": (DATA, 5),
    "unrecognized_command": (["FOO"], 1), "noop": (["NOOP"], 1), "vrfy": (["VRFY x"], 1), "help": (["HELP"], 1),
}
FILL = {"sender": "<a@b.test>", "rcpt": "<x@example.test>"}

# Every (hook, result) of the reply table, with the reply it must give.
# (pre-connection runs in the forkserver's parent: t/test_forkserver.py)
SESSION_HOOKS = [hook for hook in TABLE if hook != "pre-connection"]
CASES = [(hook, return_code(code), rule) for hook in SESSION_HOOKS for code, rule in TABLE[hook].items()]


def _expected_text(rule):
    text = rule.text
    for key, value in FILL.items():
        text = text.replace("{" + key + "}", value)
    return text


@pytest.mark.parametrize("hook,code,rule", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_hook_return_code(hook, code, rule):
    lines, index = REACH[hook]
    # DECLINED from every rcpt plugin / no queue plugin: leave out the plugins that would accept
    plugins = [f"ret {hook} {code}"] + ([] if (hook, code) == ("rcpt", "DECLINED") else ["rcpt_ok"])
    config = dict(BASE, plugins=plugins)
    capture = (hook, code) != ("queue", "DECLINED")
    result = run_session(lines + ["QUIT"], config=config, plugin_dirs=PLUGIN_DIRS, capture_queue=capture)
    replies = result.replies()
    got_code, got_lines = replies[index]
    assert got_code == rule.code, replies
    assert got_lines[-1] == _expected_text(rule), replies
    quit_answered = replies[-1][0] == 221
    assert quit_answered == (not rule.disconnect), replies
    if hook in ("data", "data_headers_end", "data_post_headers", "data_post", "queue_pre") or rule.code >= 400:
        assert result.queued == [] or hook == "queue" and code == "OK"


def test_every_hook_with_a_reply_is_reachable_by_the_tests():
    assert set(SESSION_HOOKS) <= set(REACH)


def test_done_from_queue_pre_without_a_reply_gets_451():
    result = session(["ret queue_pre DONE"], DATA + ["NOOP"])
    assert result.replies()[5] == (451, ["Internal error - try again later"])
    assert result.replies()[6] == (250, ["OK"])
    assert result.queued == []


def test_custom_message_replaces_default_and_multiline():
    result = session(["ret rcpt DENY No\\nsuch\\nuser"], RCPT)
    assert result.replies()[3] == (550, ["No\\nsuch\\nuser"])
    plugin_dir = TEST_PLUGINS
    assert os.path.isdir(plugin_dir)


def test_multiline_reply_from_a_plugin(tmp_path):
    (tmp_path / "multi.py").write_text(
        "def hook_rcpt(self, transaction, rcpt, params):\n"
        "    return DENY, 'first line\\nsecond line'\n")
    result = run_session(RCPT + ["QUIT"], config=dict(BASE, plugins=["multi"]),
                         plugin_dirs=[str(tmp_path)])
    assert "550-first line" in result.lines()
    assert "550 second line" in result.lines()


def test_no_rcpt_plugin_decides():
    result = run_session(RCPT + ["QUIT"], config=dict(BASE, plugins=[]))
    assert result.replies()[3] == (450, ["No plugin decided if relaying is allowed"])


def test_queue_declined_without_queue_plugin():
    result = run_session(DATA + ["QUIT"], config=dict(BASE, plugins=["rcpt_ok"]))
    assert result.replies()[5] == (451, ["Queuing declined or disabled; try again later"])


def test_queue_done_without_a_reply_is_answered_451():
    """DONE promises the plugin answered; with nothing written the client would read the next reply as this one's."""
    result = session(["ret queue DONE"], DATA)
    assert result.codes() == [220, 250, 250, 250, 354, 451, 221]
    assert result.queued == []


def test_first_non_declined_wins_in_config_order():
    result = session(["ret rcpt DECLINED", "ret:1 rcpt DENY first", "ret:2 rcpt OK"], RCPT)
    assert result.replies()[3] == (550, ["first"])


def test_results_are_recorded_in_transaction_notes():
    result = session(["ret rcpt OK"], RCPT, capture=False)
    # the transaction is reset at QUIT; the note was visible during the session via the ok hook
    assert result.replies()[3][0] == 250


def test_deny_and_ok_hooks_see_each_result(tmp_path):
    (tmp_path / "watch.py").write_text(
        "seen = []\n"
        "def hook_deny(self, transaction, plugin, code, text):\n"
        "    self.log(LOGWARN, f'deny-hook {plugin} {return_code(code)} {text}')\n"
        "def hook_ok(self, transaction, plugin, code, text):\n"
        "    self.log(LOGWARN, f'ok-hook {plugin} {return_code(code)}')\n")
    result = run_session(RCPT + ["QUIT"], config=dict(BASE, plugins=["watch", "ret mail OK", "ret:1 rcpt DENY nope"]),
                         plugin_dirs=[str(tmp_path)] + PLUGIN_DIRS)
    assert any("deny-hook ret_3a1 DENY nope" in line for line in result.log), result.log
    assert any("ok-hook ret OK" in line for line in result.log)


@pytest.mark.parametrize("hook,lines,index", [
    ("connect", [], 0), ("helo", HELO, 1), ("mail", MAIL, 2), ("rcpt", RCPT, 3),
    ("data", RCPT + ["DATA"], 4), ("data_post", DATA, 5), ("queue", DATA, 5),
    ("data_headers_end", DATA, 5), ("vrfy", ["VRFY x"], 1), ("unrecognized_command", ["FOO"], 1),
])
def test_a_raising_plugin_gets_the_client_a_451(hook, lines, index):
    result = session([f"boom {hook}"], lines)
    replies = result.replies()
    assert replies[index] == (451, ["Internal error - try again later"]), replies
    assert any("FATAL PLUGIN ERROR [boom]" in line and "boom from a test plugin" in line for line in result.log)
    assert result.queued == []
    if hook != "connect":
        assert replies[-1][0] == 221  # the session went on


def test_raising_plugin_in_a_rcpt_hook_adds_no_recipient():
    result = session(["boom rcpt"], RCPT + ["DATA"])
    assert result.replies()[4] == (503, ["RCPT first"])


def test_raising_plugin_in_non_deciding_hook_is_skipped():
    result = session(["boom reset_transaction", "boom quit"], DATA)
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert len(result.queued) == 1


def test_result_stored_at_data_post_reaches_this_messages_header(tmp_path):
    (tmp_path / "late.py").write_text(
        "def hook_data_post(self, transaction):\n"
        "    self.store_auth_results('dkim=pass header.d=b.test')\n")
    lines = DATA + ["MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "DATA", "Subject: 2", "", "b", "."]
    result = run_session(lines + ["QUIT"], config=dict(BASE, plugins=["late", "rcpt_ok"]),
                         plugin_dirs=[str(tmp_path)] + PLUGIN_DIRS, capture_queue=True)
    first, second = (q.message.split(b"\n")[0] for q in result.queued)
    assert first == b"Authentication-Results: mx.example.test; auth=none; dkim=pass header.d=b.test"
    assert second == b"Authentication-Results: mx.example.test; auth=none; dkim=pass header.d=b.test"


def test_header_block_is_bounded():
    many = [f"X-Filler-{n}: " + "y" * 90 for n in range(40)]
    lines = RCPT + ["DATA"] + many + ["", "body", ".", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>",
                                     "DATA", "Subject: ok", "", "b", "."]
    result = run_session(lines + ["QUIT"], config=dict(BASE, plugins=["rcpt_ok"], max_header_size="2000"),
                         capture_queue=True)
    assert result.replies()[5] == (552, ["Message header too big!"])
    assert result.codes()[-2:] == [250, 221]
    assert len(result.queued) == 1 and b"Subject: ok" in result.queued[0].message


def test_too_many_recipients():
    lines = MAIL + [f"RCPT TO:<r{n}@example.test>" for n in range(4)]
    result = run_session(lines + ["QUIT"], config=dict(BASE, plugins=["rcpt_ok"], max_recipients="3"))
    assert result.codes()[3:7] == [250, 250, 250, 452]
    assert result.replies()[6] == (452, ["Too many recipients"])
