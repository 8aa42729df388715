"""A plugin_dirs copied from a Perl install: Perl files are never compiled as Python, our plugin of
the same name is used, a Perl plugin without one is a clear load error; config/plugin_dirs is
searched before the install's plugins/; every load failure is logged, logging plugins included,
on stderr or (stderr being the client, as under xinetd) on syslog (issues 16 and 12)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from qpsmtpd.plugin import is_perl_file
from qpsmtpd.testing import REPO_DIR, make_install, run_session

REPO_PLUGINS = os.path.join(REPO_DIR, "plugins")

# Small files that look like the Perl qpsmtpd's plugins (written here; none is copied).
PERL_WRAPPER = """# Backwards-compatibility wrapper
my $whoami = 'relay';

sub init {
  my $self = shift;
  $self->isa_plugin($whoami);
}
"""
PERL_PLUGIN = """#!perl -w

=head1 NAME

{name} - a plugin

=cut

use strict;
use warnings;

use Qpsmtpd::Constants;

sub hook_rcpt {{
    my ($self, $transaction, $recipient, %param) = @_;
    return (DECLINED);
}}
"""
PERL_NO_SHEBANG = """sub hook_connect
{
  my ($self, $transaction) = @_;
  return DECLINED;
}
1;
"""


@pytest.fixture
def perl_dir(tmp_path):
    directory = tmp_path / "perl-plugins"
    (directory / "virus").mkdir(parents=True)
    (directory / "logging").mkdir()
    (directory / "check_relay").write_text(PERL_WRAPPER)
    for name in ("rcpt_ok", "dnsbl", "badrcptto", "my_custom", "virus/sophie", "logging/warn", "dspam"):
        (directory / name).write_text(PERL_PLUGIN.format(name=name))
    (directory / "count_unrecognized_commands").write_text(PERL_NO_SHEBANG)
    return str(directory)


def test_perl_detection(perl_dir, tmp_path):
    for name in ("check_relay", "rcpt_ok", "count_unrecognized_commands", "virus/sophie"):
        assert is_perl_file(os.path.join(perl_dir, name)), name
    for name in ("rcpt_ok.py", "relay.py", "queue/maildir.py", "logging/file.py", "check_badrcptto_patterns.py"):
        assert not is_perl_file(os.path.join(REPO_PLUGINS, name)), name
    own = tmp_path / "mine"
    own.write_text("# my plugin, no extension\nsub = 1\npackage = 'x'\ndef hook_helo(self, transaction, host):\n"
                   "    return DECLINED\n")
    assert not is_perl_file(str(own))


def test_perl_plugin_dir_uses_our_plugins_of_the_same_names(perl_dir):
    config = {"plugins": ["check_relay", "count_unrecognized_commands 4", "badrcptto", "rcpt_ok"],
              "rcpthosts": ["example.test"], "badrcptto": ["bad@example.test"], "loglevel": "6"}
    result = run_session(["HELO c", "MAIL FROM:<a@b.example>", "RCPT TO:<bad@example.test>",
                          "RCPT TO:<good@example.test>", "QUIT"],
                         config=config, plugin_dirs=[perl_dir, REPO_PLUGINS])
    assert result.codes() == [220, 250, 250, 550, 250, 221], result.log
    files = [getattr(type(plugin), "__module__", "") for plugin in result.smtp.plugins]
    assert all("SyntaxError" not in line for line in result.log)
    assert any("check_relay is the old name of relay" in line for line in result.log)
    assert len(files) == 4


@pytest.mark.parametrize("name, extra", [("my_custom", ""), ("dspam", "Debian no longer packages DSPAM"),
                                         ("virus/sophie", "discontinued")])
def test_perl_plugin_without_python_version_is_a_clear_load_error(perl_dir, name, extra):
    config = {"plugins": ["rcpt_ok", name], "rcpthosts": ["example.test"]}
    result = run_session(["QUIT"], config=config, plugin_dirs=[perl_dir, REPO_PLUGINS])
    assert result.codes() == [421]
    message = [line for line in result.log if "failed to load" in line]
    assert len(message) == 1, result.log
    expected = f"Perl plugin {name} ({os.path.join(perl_dir, name)}): port it, see docs/migration.md"
    assert expected in message[0] and extra in message[0]
    assert "SyntaxError" not in message[0]


def test_plugin_dirs_searched_first_then_the_install_plugins(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    (own / "rcpt_ok.py").write_text("def hook_rcpt(self, transaction, recipient, params=None):\n"
                                   "    return DENY, 'own rcpt_ok'\n")
    (own / "extra.py").write_text("def hook_helo(self, transaction, host):\n    return DENY, 'own extra'\n")
    install = make_install({"plugins": ["rcpt_ok", "relay"], "plugin_dirs": [str(own)]}, plugin_dirs=[str(own)])
    try:
        os.symlink(REPO_PLUGINS, os.path.join(install, "plugins"))
        from qpsmtpd.qp import Qpsmtpd

        qp = Qpsmtpd(install)
        loader = qp.plugin_loader
        assert loader.plugin_dirs == [str(own), os.path.join(install, "plugins")]
        assert loader.find("rcpt_ok") == str(own / "rcpt_ok.py")      # plugin_dirs first
        assert loader.find("relay") == os.path.join(install, "plugins", "relay.py")  # then the install's
    finally:
        shutil.rmtree(install)
    result = run_session(["HELO c", "MAIL FROM:<a@b.example>", "RCPT TO:<x@example.test>", "QUIT"],
                         config={"plugins": ["relay", "rcpt_ok"], "rcpthosts": ["example.test"]},
                         plugin_dirs=[str(own), REPO_PLUGINS])
    assert result.replies()[3] == (550, ["own rcpt_ok"])


# -- every load failure is logged ---------------------------------------------------------

def run_process(install, stdin=b"QUIT\r\n", env=None):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("QPSMTPD", "TCP"))}
    full.update(env or {})
    return subprocess.run([sys.executable, os.path.join(install, "qpsmtpd.py")], input=stdin,
                          capture_output=True, env=full, timeout=20)


@pytest.fixture
def install_factory():
    made = []

    def make(config):
        install = make_install(config, runnable=True)
        made.append(install)
        return install

    yield make
    for install in made:
        shutil.rmtree(install, ignore_errors=True)


def test_failing_logging_plugin_is_logged_on_stderr(install_factory, perl_dir):
    install = install_factory({"logging": ["logging/syslog facility LOG_BOGUS"], "plugins": ["rcpt_ok"],
                               "loglevel": "0"})
    result = run_process(install)
    assert result.stdout.startswith(b"421 ")
    assert b"plugin failed to load: logging/syslog facility LOG_BOGUS" in result.stderr


def test_perl_logging_plugin_is_logged_on_stderr(install_factory, perl_dir):
    os.remove(os.path.join(perl_dir, "logging", "warn"))
    (open(os.path.join(perl_dir, "logging", "apache"), "w")).write(PERL_PLUGIN.format(name="logging/apache"))
    install = install_factory({"logging": ["logging/apache"], "plugins": ["rcpt_ok"], "plugin_dirs": [perl_dir]})
    result = run_process(install)
    assert result.stdout.startswith(b"421 ")
    assert b"Perl plugin logging/apache" in result.stderr and b"port it, see docs/migration.md" in result.stderr
    assert result.stderr.count(b"failed to load") == 1


def test_plugin_failure_is_logged_once_on_stderr(install_factory):
    install = install_factory({"plugins": ["rcpt_ok", "no_such_plugin"]})
    result = run_process(install)
    assert result.stdout.startswith(b"421 ")
    assert result.stderr.count(b"failed to load") == 1, result.stderr
    assert b"no_such_plugin" in result.stderr


def test_load_failure_goes_to_syslog_when_stderr_is_the_client(install_factory, tmp_path):
    """xinetd hands the client's socket as stderr: the failure must reach syslog instead."""
    install = install_factory({"logging": ["logging/syslog facility LOG_BOGUS"], "plugins": ["rcpt_ok"]})
    log_path = str(tmp_path / "log.sock")
    log_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log_sock.bind(log_path)
    log_sock.settimeout(10)
    server, client = socket.socketpair()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QPSMTPD", "TCP"))}
        env["QPSMTPD_SYSLOG_SOCKET"] = log_path
        proc = subprocess.Popen([sys.executable, os.path.join(install, "qpsmtpd.py")], stdin=server.fileno(),
                                stdout=server.fileno(), stderr=server.fileno(), env=env)
        server.close()
        client.settimeout(10)
        received = b""
        while True:
            chunk = client.recv(4096)
            if not chunk:
                break
            received += chunk
        proc.wait(timeout=10)
        datagram = log_sock.recv(4096)
    finally:
        client.close()
        log_sock.close()
    assert received.startswith(b"421 ") and b"failed to load" not in received
    assert datagram.startswith(b"<18>qpsmtpd[")  # mail.crit
    assert b"plugin failed to load: logging/syslog facility LOG_BOGUS" in datagram


def test_compile_skips_perl_files_and_covers_both_dirs(perl_dir, tmp_path, capsys):
    """`qpsmtpd.py --compile` with a Perl plugin_dirs: no SyntaxError, the install's plugins/ compiled too."""
    import importlib.util

    from qpsmtpd.compile import compile_all

    install = tmp_path / "install"
    (install / "config").mkdir(parents=True)
    (install / "plugins").mkdir()
    (install / "plugins" / "mine.py").write_text("def hook_connect(self, transaction):\n    return DECLINED\n")
    (install / "config" / "plugin_dirs").write_text(perl_dir + "\n")
    saved = os.environ.pop("QPSMTPD_CONFIG", None)
    try:
        assert compile_all(str(install), []) == 0
    finally:
        if saved is not None:
            os.environ["QPSMTPD_CONFIG"] = saved
    captured = capsys.readouterr()
    assert "SyntaxError" not in captured.err and "failed" not in captured.out
    assert os.path.exists(importlib.util.cache_from_source(str(install / "plugins" / "mine.py")))
    assert not os.path.exists(importlib.util.cache_from_source(os.path.join(perl_dir, "rcpt_ok")))
