"""Python names of the plugin API and their Perl aliases (qpsmtpd.compat): both work and agree;
admins' plugins written the Perl way (injected names, callable notes, is_naughty, SUPER) keep working."""

import os

from qpsmtpd import compat
from qpsmtpd.notes import Notes
from qpsmtpd.plugin import Plugin
from qpsmtpd.qp import Qpsmtpd
from qpsmtpd.testing import REPO_DIR, make_install, run_session

PLUGINS_DIR = os.path.join(REPO_DIR, "plugins")
BASE = {"me": "mx.example.test", "rcpthosts": ["example.test"]}


def make_plugin(hook="connect"):
    qp = Qpsmtpd(make_install({}))
    qp.log_sink = lambda line: None
    plugin = Plugin()
    plugin._name, plugin._qp, plugin._hook = "demo", qp, hook
    return plugin


def test_naughty_python_names():
    plugin = make_plugin()
    assert not plugin.naughty
    assert plugin.mark_naughty("listed") is True
    assert plugin.naughty == "listed" and plugin.connection.notes["rejected"] == "listed"
    assert plugin.mark_naughty("second reason") is True
    assert plugin.naughty == "listed"  # a pending message is kept
    plugin.clear_naughty()
    assert not plugin.naughty and plugin.connection.notes["rejected"] == 0


def test_is_naughty_is_getter_and_setter_alias():
    plugin = make_plugin()
    assert plugin.is_naughty() == plugin.naughty
    assert plugin.is_naughty(1) is True and plugin.naughty == 1
    assert plugin.is_naughty() == 1
    assert plugin.is_naughty(0) is False and not plugin.naughty


def test_notes_python_and_perl_spellings_agree():
    notes = Notes()
    notes["a"] = 1
    assert notes("a") == 1 and notes.get("a") == 1
    assert notes("b", 2) == 2 and notes["b"] == 2
    assert notes("missing") is None
    assert isinstance(notes, dict) and isinstance(notes, compat.PerlNotes)


def test_perl_aliases_live_in_one_place():
    for name in ("is_naughty", "SUPER"):
        owner = next(klass for klass in Plugin.__mro__ if name in vars(klass))
        assert owner is compat.PerlPluginNames, name
    assert "__call__" in vars(compat.PerlNotes) and "__call__" not in vars(Notes)


def test_class_plugin_inherits_with_super(tmp_path):
    """The Python way: explicit imports, a class, isa_plugin in init, super() for the parent."""
    (tmp_path / "rcpt_ok_counting.py").write_text('''
from qpsmtpd.constants import DENY, DENY_DISCONNECT
from qpsmtpd.plugin import Plugin, split_result


class RcptOkCounting(Plugin):
    def init(self, qp, *args):
        self.isa_plugin("rcpt_ok")

    def hook_rcpt(self, transaction, recipient, params=None):
        code, lines = split_result(super().hook_rcpt(transaction, recipient, params))
        if code != DENY:
            return code
        count = self.connection.notes.get("relay_attempts", 0) + 1
        self.connection.notes["relay_attempts"] = count
        if count > 1:
            self.mark_naughty("relay attempts")
            return DENY_DISCONNECT, "Too many relaying attempts"
        return (code, *lines)
''')
    lines = ["HELO c", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>",
             "RCPT TO:<x@foreign.test>", "RCPT TO:<y@foreign.test>", "QUIT"]
    result = run_session(lines, config=dict(BASE, plugins=["rcpt_ok_counting"]),
                         plugin_dirs=[str(tmp_path), PLUGINS_DIR])
    assert result.codes() == [220, 250, 250, 250, 550, 550]
    assert result.replies()[4] == (550, ["Relaying denied (#5.7.1)"])
    assert result.replies()[5] == (550, ["Too many relaying attempts"])


def test_admin_plugin_written_the_perl_way_keeps_working(tmp_path):
    """No imports (constants injected), callable notes, is_naughty as setter and getter,
    isa_plugin + self.SUPER."""
    (tmp_path / "perlish").write_text('''
def init(self, qp, *args):
    self.isa_plugin("rcpt_ok")

def hook_connect(self, transaction):
    self.connection.notes("greeted", 1)
    return DECLINED

def hook_rcpt(self, transaction, recipient, params):
    code, msg = split_result(self.SUPER.hook_rcpt(transaction, recipient, params))
    if code == DENY and self.connection.notes("greeted"):
        self.is_naughty("relay attempt")
    if self.is_naughty():
        return DENY, "naughty: " + str(self.is_naughty())
    return (code, *msg)
''')
    lines = ["HELO c", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "RCPT TO:<x@foreign.test>",
             "RCPT TO:<y@example.test>", "QUIT"]
    result = run_session(lines, config=dict(BASE, plugins=["perlish"]), plugin_dirs=[str(tmp_path), PLUGINS_DIR])
    assert result.codes() == [220, 250, 250, 250, 550, 550, 221]
    assert result.replies()[4][1] == ["naughty: relay attempt"]
    assert result.replies()[5][1] == ["naughty: relay attempt"]


def test_a_plugin_may_still_have_its_own_naughty_attribute():
    plugin = make_plugin()
    plugin.mark_naughty("listed")
    assert plugin.naughty == "listed"
    plugin.naughty = "mine"  # an older plugin's own attribute of that name keeps working
    assert plugin.naughty == "mine" and plugin.connection.notes["naughty"] == "listed"
