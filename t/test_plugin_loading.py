"""Loading plugins: file and class plugins, :N instances, plugin_dirs, modules, isa_plugin."""

import os
import sys

import pytest

from qpsmtpd.plugin import escape_plugin_name
from qpsmtpd.testing import REPO_DIR, run_session

RCPT = ["HELO c.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "QUIT"]
BASE = {"me": "mx.example.test", "rcpthosts": ["example.test"]}


def write(directory, name, text):
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("name,escaped", [
    ("rcpt_ok", "rcpt_ok"), ("queue/qmail-queue", "queue::qmail_2dqueue"), ("rcpt_ok:0", "rcpt_ok_3a0"),
    ("logging/warn", "logging::warn"), ("virus/1x", "virus::_31x"),
])
def test_plugin_name_escaping(name, escaped):
    assert escape_plugin_name(name) == escaped


def test_simplest_plugin_is_one_function(tmp_path):
    write(tmp_path, "temp_disable_connection",
          "def hook_connect(self, transaction):\n    return DENYSOFT, 'Sorry, server is temporarily unavailable.'\n")
    result = run_session(RCPT, config=dict(BASE, plugins=["temp_disable_connection"]), plugin_dirs=[str(tmp_path)])
    assert result.lines() == ["450 Sorry, server is temporarily unavailable."]


def test_class_plugin_with_init_register_and_args(tmp_path):
    write(tmp_path, "sub/checker.py", '''
class Checker(Plugin):
    def init(self, qp, *args):
        self.seen = ["init"]
    def register(self, qp, domain):
        self.seen.append("register")
        self.domain = domain
        self.register_hook("rcpt", "check")
    def check(self, transaction, rcpt, params):
        assert self.hook_name == "rcpt" and self.plugin_name == "sub::checker"
        if rcpt.host == self.domain:
            return DENY, f"no mail for {self.domain} ({','.join(self.seen)})"
        return DECLINED
''')
    result = run_session(RCPT, config=dict(BASE, plugins=["sub/checker example.test", "rcpt_ok"]),
                         plugin_dirs=[str(tmp_path), os.path.join(REPO_DIR, "plugins")])
    assert result.replies()[3] == (550, ["no mail for example.test (init,register)"])


def test_numbered_instances_have_their_own_args(tmp_path):
    write(tmp_path, "deny_domain", '''
def register(self, qp, domain):
    self.domain = domain
def hook_rcpt(self, transaction, rcpt, params):
    if rcpt.host == self.domain:
        return DENY, f"{self.plugin_name} says no"
''')
    lines = ["HELO c", "MAIL FROM:<a@b.test>", "RCPT TO:<x@one.test>", "RCPT TO:<x@two.test>", "QUIT"]
    result = run_session(lines, config=dict(BASE, plugins=["deny_domain:0 one.test", "deny_domain:1 two.test"]),
                         plugin_dirs=[str(tmp_path)])
    assert result.replies()[3] == (550, ["deny_domain_3a0 says no"])
    assert result.replies()[4] == (550, ["deny_domain_3a1 says no"])


def test_plugin_dirs_are_searched_first(tmp_path):
    write(tmp_path, "rcpt_ok", "def hook_rcpt(self, t, rcpt, params):\n    return DENY, 'local override'\n")
    result = run_session(RCPT, config=dict(BASE, plugins=["rcpt_ok"]),
                         plugin_dirs=[str(tmp_path), os.path.join(REPO_DIR, "plugins")])
    assert result.replies()[3] == (550, ["local override"])


def test_python_module_plugin_named_with_a_dot(tmp_path, monkeypatch):
    package = tmp_path / "mycompany"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rcptcheck.py").write_text(
        "from qpsmtpd.plugin import Plugin\nfrom qpsmtpd.constants import DENY\n"
        "class RcptCheck(Plugin):\n"
        "    def hook_rcpt(self, transaction, rcpt, params):\n"
        "        return DENY, 'module plugin ' + self.plugin_name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_session(RCPT, config=dict(BASE, plugins=["mycompany.rcptcheck"]))
    assert result.replies()[3] == (550, ["module plugin mycompany.rcptcheck"])
    sys.modules.pop("mycompany.rcptcheck", None)


def test_isa_plugin_inherits_and_calls_the_parent(tmp_path):
    write(tmp_path, "rcpt_ok_maxrelay", '''
def init(self, qp, *args):
    self.max_relay = int(args[0]) if args else 5
    self.isa_plugin("rcpt_ok")

def hook_rcpt(self, transaction, recipient, params):
    code, msg = split_result(self.SUPER.hook_rcpt(transaction, recipient, params))
    if code != DENY:
        return (code, *msg)
    count = (self.connection.notes("count_relay_attempts") or 0) + 1
    self.connection.notes("count_relay_attempts", count)
    if count > self.max_relay:
        return DENY_DISCONNECT, "Too many relaying attempts"
    return (code, *msg)
''')
    lines = ["HELO c", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>"] + \
        [f"RCPT TO:<x{i}@foreign.test>" for i in range(3)] + ["QUIT"]
    result = run_session(lines, config=dict(BASE, plugins=["rcpt_ok_maxrelay 2"]),
                         plugin_dirs=[str(tmp_path), os.path.join(REPO_DIR, "plugins")])
    assert result.codes() == [220, 250, 250, 250, 550, 550, 550]
    assert result.replies()[-1] == (550, ["Too many relaying attempts"])


def test_missing_plugin_refuses_the_session_and_names_it():
    result = run_session(RCPT, config=dict(BASE, plugins=["rcpt_ok", "no_such_plugin arg"]))
    assert result.lines() == ["421 mx.example.test Service temporarily unavailable; try again later"]
    assert any("no_such_plugin" in line and "not found" in line for line in result.log)


def test_plugin_that_fails_to_compile_is_named(tmp_path):
    write(tmp_path, "broken", "def hook_rcpt(self, t:\n")
    result = run_session(RCPT, config=dict(BASE, plugins=["broken"]), plugin_dirs=[str(tmp_path)])
    assert any("broken" in line and "SyntaxError" in line for line in result.log)


def test_notes_survive_per_connection_and_per_transaction(tmp_path):
    write(tmp_path, "counter", '''
def hook_mail(self, transaction, sender, params):
    self.connection.notes["mails"] = self.connection.notes.get("mails", 0) + 1
    assert transaction.notes.get("seen") is None
    transaction.notes("seen", True)
    return DENY, f"mail number {self.connection.notes('mails')}"
''')
    lines = ["HELO c", "MAIL FROM:<a@b.test>", "MAIL FROM:<a@b.test>", "QUIT"]
    result = run_session(lines, config=dict(BASE, plugins=["counter"]), plugin_dirs=[str(tmp_path)])
    assert result.replies()[2] == (550, ["mail number 1"])
    assert result.replies()[3] == (550, ["mail number 2"])


def test_temp_file_and_temp_dir_are_cleaned(tmp_path):
    marker = tmp_path / "paths"
    write(tmp_path, "tempuser", f'''
import os, stat
def hook_data_post(self, transaction):
    path = self.temp_file()
    open(path, "w").write("x")
    directory = self.temp_dir()
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    open({str(marker)!r}, "w").write(path + "\\n" + directory)
''')
    lines = ["HELO c", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "DATA", "Subject: x", "", "b", ".", "QUIT"]
    result = run_session(lines, config=dict(BASE, plugins=["tempuser", "rcpt_ok"]),
                         plugin_dirs=[str(tmp_path), os.path.join(REPO_DIR, "plugins")], capture_queue=True)
    assert result.codes()[-2:] == [250, 221]
    path, directory = marker.read_text().split("\n")
    assert not os.path.exists(path) and not os.path.exists(directory)


def test_config_hook_answers_before_files(tmp_path):
    write(tmp_path, "cfg", '''
def hook_config(self, transaction, name):
    if name == "rcpthosts":
        return OK, ["from-hook.test"]
    return DECLINED
''')
    lines = ["HELO c", "MAIL FROM:<a@b.test>", "RCPT TO:<x@from-hook.test>", "RCPT TO:<x@example.test>", "QUIT"]
    result = run_session(lines, config=dict(BASE, plugins=["cfg", "rcpt_ok"]),
                         plugin_dirs=[str(tmp_path), os.path.join(REPO_DIR, "plugins")])
    assert result.codes()[3:5] == [250, 550]


def test_user_config_hook_answers_for_an_address(tmp_path):
    write(tmp_path, "ucfg", '''
def hook_user_config(self, transaction, address, name):
    if name == "spam_level":
        return OK, [address.user + "-level"]
def hook_rcpt(self, transaction, rcpt, params):
    return DENY, rcpt.config("spam_level")[0]
''')
    result = run_session(RCPT, config=dict(BASE, plugins=["ucfg"]), plugin_dirs=[str(tmp_path)])
    assert result.replies()[3] == (550, ["x-level"])
