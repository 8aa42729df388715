"""The shared plugin machinery of lib/qpsmtpd/policy.py (reject, reject_type, naughty, immunity, karma)."""

from qpsmtpd.constants import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT
from qpsmtpd.plugin import Plugin
from qpsmtpd.qp import Qpsmtpd
from qpsmtpd.testing import make_install

from policy_support import MAIL, log_has, replies, session


def make_plugin(*args, hook="mail"):
    qp = Qpsmtpd(make_install({}))
    plugin = Plugin()
    plugin._name = "demo"
    plugin._qp = qp
    plugin.args = list(args)
    from qpsmtpd.plugin import parse_args
    plugin.opts = parse_args(list(args))
    plugin._hook = hook
    qp.log_sink = lambda line: None
    return plugin


def test_get_reject_default_rejects_with_deny():
    assert make_plugin().get_reject("go away") == (DENY, "go away")


def test_get_reject_zero_only_logs():
    assert make_plugin("reject", "0").get_reject("go away") == DECLINED


def test_get_reject_type_words():
    for word, code in (("temp", DENYSOFT), ("soft", DENYSOFT), ("perm", DENY), ("hard", DENY),
                       ("disconnect", DENY_DISCONNECT), ("temp_disconnect", DENYSOFT_DISCONNECT)):
        assert make_plugin("reject", "1", "reject_type", word).get_reject("x") == (code, "x")
        assert make_plugin("reject", word).get_reject("x") == (code, "x")
    assert make_plugin("reject_type", "bogus").get_reject_type() == DENY
    assert make_plugin().get_reject_type(DENYSOFT) == DENYSOFT
    assert make_plugin().get_reject_type(DENY, "temp") == DENYSOFT


def test_get_reject_unspecified_message():
    assert make_plugin().get_reject() == (DENY, "unspecified error")


def test_naughty_in_message_hook_is_per_transaction():
    plugin = make_plugin("reject", "naughty", "reject_type", "temp", hook="mail")
    assert plugin.get_reject("bad sender") == DECLINED
    assert plugin.transaction.notes["naughty"] == "(demo) bad sender"
    assert plugin.transaction.notes["naughty_reject_type"] == "temp"
    assert not plugin.connection.notes.get("naughty")
    plugin.get_reject("second")
    assert plugin.transaction.notes["naughty"] == "(demo) bad sender\n(demo) second"
    assert plugin.is_naughty()
    plugin.qp.reset_transaction()
    assert not plugin.is_naughty()


def test_naughty_in_client_hook_is_per_connection():
    plugin = make_plugin("reject", "naughty", hook="connect")
    plugin.get_reject("listed")
    assert plugin.connection.notes["naughty"] == "(demo) listed"
    plugin.qp.reset_transaction()
    assert plugin.is_naughty() == "(demo) listed"


def test_explicit_scope():
    plugin = make_plugin(hook="data_post")
    plugin.store_deferred_reject("client thing", scope="connection")
    assert plugin.connection.notes["naughty"] == "client thing"


def test_store_auth_results_scopes():
    plugin = make_plugin(hook="connect")
    plugin.store_auth_results("iprev=pass")
    plugin.store_auth_results("iprev=fail")
    assert plugin.connection.notes["authentication_results"] == "iprev=pass; iprev=fail"
    plugin._hook = "mail"
    plugin.store_auth_results("spf=pass smtp.mailfrom=b.test")
    assert plugin.transaction.notes["authentication_results"] == "spf=pass smtp.mailfrom=b.test"


def test_is_immune():
    plugin = make_plugin()
    assert not plugin.is_immune()
    plugin.connection.relay_client = True
    assert plugin.is_immune()
    plugin.connection.relay_client = False
    plugin.connection.notes["whitelisthost"] = 1
    assert plugin.is_immune()
    plugin.connection.notes["whitelisthost"] = 0
    plugin.transaction.notes["whitelistsender"] = 1
    assert plugin.is_immune()
    plugin.qp.reset_transaction()
    assert not plugin.is_immune()


def test_is_naughty_setter_keeps_message():
    plugin = make_plugin(hook="connect")
    plugin.store_deferred_reject("reason")
    assert plugin.is_naughty(1) is True
    assert plugin.connection.notes["naughty"] == "reason"
    assert plugin.connection.notes["rejected"] == 1


def test_adjust_karma():
    plugin = make_plugin()
    assert plugin.adjust_karma(-2) == -2
    plugin.adjust_karma(5)
    assert plugin.connection.notes["karma"] == 3


def test_auth_results_header_joins_connection_and_transaction(tmp_path):
    plugin = tmp_path / "ar.py"
    plugin.write_text(
        "def hook_connect(self, t):\n    self.store_auth_results('iprev=pass')\n"
        "def hook_mail(self, t, s, p=None):\n    self.store_auth_results('spf=pass smtp.mailfrom=' + s.host)\n")
    from qpsmtpd.testing import REPO_DIR
    import os
    from qpsmtpd.testing import run_session
    result = run_session(MAIL + ["RCPT TO:<x@example.test>", "DATA", "Subject: 1", "", "b", ".",
                                 "MAIL FROM:<c@d.test>", "RCPT TO:<x@example.test>", "DATA", "Subject: 2", "", "b", ".",
                                 "QUIT"],
                         config={"plugins": ["ar", "rcpt_ok"], "me": "mx.example.test", "rcpthosts": ["example.test"]},
                         plugin_dirs=[str(tmp_path), os.path.join(REPO_DIR, "plugins")], capture_queue=True)
    first, second = result.queued
    assert b"Authentication-Results: mx.example.test; auth=none; iprev=pass; spf=pass smtp.mailfrom=b.test\n" in first.message
    assert b"Authentication-Results: mx.example.test; auth=none; iprev=pass; spf=pass smtp.mailfrom=d.test\n" in second.message


def test_loglevel_argument_changes_level():
    result = session(["badmailfrom"], MAIL, badmailfrom=["a@b.test"])
    assert replies(result)[2].startswith("550")
    assert not log_has(result, "badmailfrom: fail")
    result = session(["badmailfrom loglevel 2"], MAIL, badmailfrom=["a@b.test"])
    assert log_has(result, "(mail) badmailfrom: fail, a@b.test in badmailfrom")
