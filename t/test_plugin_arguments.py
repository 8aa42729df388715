"""Shipped plugins declare their arguments (qpsmtpd.args): unknown keys and bad values
are reported, a strict bad value refuses loading, every Perl argument is still accepted."""

import ast
import os

import pytest

from qpsmtpd.args import Arguments
from qpsmtpd.testing import REPO_DIR, run_session

PLUGINS_DIR = os.path.join(REPO_DIR, "plugins")
BASE = {"me": "mx.example.test", "rcpthosts": ["example.test"]}
RCPT = ["HELO c.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "QUIT"]


def shipped_plugins():
    """Every shipped plugin file except the queue plugins (converted separately)."""
    names = []
    for directory, _dirs, files in os.walk(PLUGINS_DIR):
        for file_name in files:
            if not file_name.endswith(".py"):
                continue
            name = os.path.relpath(os.path.join(directory, file_name), PLUGINS_DIR)[:-3]
            if not name.startswith("queue/"):
                names.append(name)
    return sorted(names)


def loaded(result, name):
    return next(plugin for plugin in result.smtp.plugins if plugin.plugin_name == name)


@pytest.mark.parametrize("name", shipped_plugins())
def test_every_shipped_plugin_declares_its_arguments(name):
    """A module-level or class-level `arguments = Arguments(...)` in each plugin file."""
    tree = ast.parse(open(os.path.join(PLUGINS_DIR, name + ".py")).read())
    assigned = [node for node in ast.walk(tree) if isinstance(node, ast.Assign)
                and any(isinstance(target, ast.Name) and target.id == "arguments" for target in node.targets)]
    assert assigned, f"plugins/{name}.py has no `arguments = Arguments(...)`"


def test_unknown_argument_is_logged_once_and_listed():
    result = run_session(RCPT, config=dict(BASE, plugins=["rcpt_ok bogusarg 1"]))
    assert result.codes() == [220, 250, 250, 250, 221]  # still loads and works
    plugin = loaded(result, "rcpt_ok")
    assert len(plugin.argument_warnings) == 1 and "bogusarg" in plugin.argument_warnings[0]
    assert len([line for line in result.log if "bogusarg" in line]) == 1


def test_module_level_arguments_are_the_plugins_spec(tmp_path):
    (tmp_path / "limit.py").write_text(
        "from qpsmtpd.args import Arguments, Option\n"
        "from qpsmtpd.constants import DENY\n"
        "arguments = Arguments(Option('max', kind='int', default=2))\n"
        "def hook_rcpt(self, transaction, rcpt, params=None):\n"
        "    if len(transaction.recipients) >= self.opts['max']:\n"
        "        return DENY, f\"at most {self.opts['max']}\"\n")
    lines = ["HELO c.test", "MAIL FROM:<a@b.test>"] + ["RCPT TO:<x@example.test>"] * 3 + ["QUIT"]
    result = run_session(lines, config=dict(BASE, plugins=["limit max 1", "rcpt_ok"]),
                         plugin_dirs=[str(tmp_path), PLUGINS_DIR])
    assert result.codes() == [220, 250, 250, 250, 550, 550, 221]
    assert result.replies()[4] == (550, ["at most 1"])
    assert isinstance(type(loaded(result, "limit")).arguments, Arguments)


@pytest.mark.components
def test_bad_value_is_logged_once_and_the_default_used():
    """`sender_permitted_from reject 9` (levels are 0-6): reported, the plugin loads with
    the default (config/spfbehavior, here none: level 0)."""
    result = run_session(RCPT, config=dict(BASE, plugins=["sender_permitted_from reject 9", "rcpt_ok"]))
    assert result.codes() == [220, 250, 250, 250, 221]
    plugin = loaded(result, "sender_permitted_from")
    assert plugin.level == 0
    assert len(plugin.argument_warnings) == 1 and "reject: 9 is above the maximum 6" in plugin.argument_warnings[0]
    assert len([line for line in result.log if "above the maximum" in line]) == 1


def test_strict_bad_value_refuses_loading():
    """random_error's rate is strict: a plugin line it cannot read refuses the session."""
    result = run_session(RCPT, config=dict(BASE, plugins=["random_error often", "rcpt_ok"]))
    assert result.codes() == [421]
    assert any("random_error" in line and "'often' is not a number" in line for line in result.log)


@pytest.mark.parametrize("line,opts", [
    pytest.param("dnsbl disconnect", {"reject_type": "disconnect", "reject": 1}, marks=pytest.mark.components),          # the older positional form (dnspython)
    pytest.param("dnsbl reject 0 reject_type temp timeout 3", {"reject": 0, "reject_type": "temp", "timeout": 3.0}, marks=pytest.mark.components),  # dnspython
    ("earlytalker wait 0.5 check-at DATA defer-reject 1 action denysoft",
     {"wait": 0.5, "check-at": ["DATA"], "defer-reject": True, "reject": 1, "reject_type": "temp"}),
    pytest.param("uribl scan-headers 1 checkip no", {"check-headers": True, "checkip": False, "action": "add-header"}, marks=pytest.mark.components),  # dnspython
    ("bogus_bounce deny", {"action": "deny", "reject": 1}),
    ("naughty reject data reject_type temp", {"reject": "data", "reject_type": "temp"}),
    ("headers require From,Date past 7", {"require": ["From", "Date"], "past": 7.0}),
    pytest.param("sender_permitted_from spf_deny 2", {"reject": 4}, marks=pytest.mark.components),  # dnspython
    ("relay only 1", {"only": True}),
])
def test_perl_arguments_load_typed_without_warnings(line, opts):
    result = run_session(["QUIT"], config=dict(BASE, plugins=[line]))
    plugin = loaded(result, line.split()[0])
    assert plugin.argument_warnings == []
    assert {key: plugin.opts[key] for key in opts} == opts


# The argument keys each Perl plugin read (its POD and its code), e.g.
# `git -C <perl qpsmtpd> show HEAD:plugins/dnsbl`.  Positional words are in POSITIONAL.
PERL_KEYS = {
    "auth/auth_checkpassword": ["checkpw", "true"],
    "auth/auth_vpopmaild": ["host", "port"],
    "badmailfrom": ["reject", "reject_type"],
    "bogus_bounce": ["action", "reject", "reject_type"],
    "dkim": ["reject", "reject_type"],
    "dmarc": ["reject", "reject_type", "reporting"],
    "dnsbl": ["reject", "reject_type", "timeout"],
    "earlytalker": ["action", "check-at", "defer-reject", "reject", "reject_type", "wait"],
    "fcrdns": ["reject", "reject_type", "timeout"],
    "headers": ["future", "past", "reject", "reject_type", "require"],
    "helo": ["dns_timeout", "policy", "reject", "reject_type", "timeout"],
    "help": ["help_dir", "not_implemented"],
    "loadcheck": ["cache_time", "max_load", "uptime"],
    "logging/adaptive": ["accept", "prefix", "reject"],
    "logging/file": ["loglevel", "nosplit", "reopen", "tsformat"],
    "logging/syslog": ["facility", "ident", "loglevel", "logsock", "priority"],
    "naughty": ["reject", "reject_type"],
    "rcpt_map": ["default", "domain", "file"],
    "relay": ["only"],
    "resolvable_fromhost": ["reject", "reject_type"],
    "rhsbl": ["reject", "reject_type"],
    "sender_permitted_from": ["no_dmarc_policy", "reject", "spf_deny"],
    "uribl": ["action", "check-headers", "checkip", "mask", "scan-headers", "timeout"],
    "whitelist": ["merge", "per_recipient"],
}
POSITIONAL = {
    "auth/auth_imap": 2, "bogus_bounce": 1, "connection_time": 1, "count_unrecognized_commands": 1,
    "dnsbl": 1, "logging/connection_id": 1, "logging/transaction_id": 1, "logging/warn": 1, "loop": 1,
    "noop_counter": 1, "random_error": 1, "rhsbl": 1, "tls": 4, "user_config": 1,
}


def spec_of(name):
    from qpsmtpd.plugin import PluginLoader
    from qpsmtpd.qp import Qpsmtpd
    from qpsmtpd.testing import make_install

    loader = PluginLoader(Qpsmtpd(make_install({})), [PLUGINS_DIR])
    return loader.load_class(name).arguments


@pytest.mark.parametrize("name", sorted(set(PERL_KEYS) | set(POSITIONAL)))
def test_every_perl_argument_is_still_accepted(name):
    spec = spec_of(name)
    for key in PERL_KEYS.get(name, []):
        assert spec.option(key) is not None, f"{name}: {key}"
    assert len(spec.positional) == POSITIONAL.get(name, 0)


@pytest.mark.parametrize("line,key,value", [
    pytest.param("helo policy Strict", "policy", "strict", marks=pytest.mark.components),  # dnspython
    pytest.param("dnsbl reject_type TEMP", "reject_type", "temp", marks=pytest.mark.components),  # dnspython
    ("naughty reject RCPT", "reject", "rcpt"),
    pytest.param("uribl action Deny", "action", "deny", marks=pytest.mark.components),  # dnspython
])
def test_choice_words_in_any_case(line, key, value):
    """The Perl plugins (and their ports) lower-cased these words."""
    result = run_session(["QUIT"], config=dict(BASE, plugins=[line]))
    plugin = loaded(result, line.split()[0])
    assert plugin.argument_warnings == [] and plugin.opts[key] == value
