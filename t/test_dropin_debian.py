"""Debian's qpsmtpd 0.94 configuration (its /etc/qpsmtpd, written here with temp paths) loads
unchanged: old plugin names with their arguments, a plugin_dirs of Perl plugins, $include'd
rcpthosts and queue method, `logging/file loglevel LOGINFO FILE` (issue 16).  dnsbl and rhsbl
need dnspython, hence the marker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from qpsmtpd.testing import make_install

pytestmark = pytest.mark.components

DEBIAN_PLUGINS = """# Qpsmtpd plugin configuration (Debian's default, comments shortened)
check_earlytalker action log
check_relay
# require_resolvable_fromhost
rhsbl
dnsbl
check_spamhelo
check_badmailfrom
check_badrcptto
check_loop
rcpt_ok
$include {dir}/etc/debian-queue-method
"""
PERL_WRAPPER = """# Backwards-compatibility wrapper; qpsmtpd 0.94 renamed the check_* plugins
my $whoami = '{target}';

sub init {{
  my $self = shift;
  $self->log(LOGINFO, "The check_$whoami plugin is deprecated");
  $self->isa_plugin($whoami);
}}
"""
PERL_PLUGIN = "#!perl -w\n\n=head1 NAME\n\n{name}\n\n=cut\n\nsub hook_connect {{\n  return DECLINED;\n}}\n"
OLD_NAMES = {"check_earlytalker": "earlytalker", "check_relay": "relay", "check_spamhelo": "helo",
             "check_badmailfrom": "badmailfrom", "check_badrcptto": "badrcptto", "check_loop": "loop"}


@pytest.fixture
def debian(tmp_path):
    perl = tmp_path / "usr-share-qpsmtpd-plugins"
    (perl / "queue").mkdir(parents=True)
    for old, target in OLD_NAMES.items():
        (perl / old).write_text(PERL_WRAPPER.format(target=target))
    for name in ("earlytalker", "relay", "rhsbl", "dnsbl", "helo", "badmailfrom", "badrcptto", "loop", "rcpt_ok",
                 "queue/maildir", "queue/qmail-queue"):
        (perl / name).write_text(PERL_PLUGIN.format(name=name))
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "debian-queue-method").write_text(f"queue/maildir {tmp_path}/Maildir\n")
    (etc / "debian-rcpthosts").write_text("example.test\n")
    (tmp_path / "log").mkdir()
    install = make_install({
        "plugins": DEBIAN_PLUGINS.replace("{dir}", str(tmp_path)),
        "plugin_dirs": ["# /usr/local/share/qpsmtpd/plugins", str(perl)],
        "logging": [f"logging/file loglevel LOGINFO {tmp_path}/log/qpsmtpd.log"],
        "loglevel": "6",
        "rcpthosts": [f"$include {etc}/debian-rcpthosts"],
        "relayclients": ["127.0.0.1"],
        "badhelo": ["# none"], "badmailfrom": ["# none"], "badrcptto": ["# none"],
        "dnsbl_zones": ["# none"], "rhsbl_zones": ["# none"],
    }, runnable=True)
    yield install, tmp_path
    shutil.rmtree(install, ignore_errors=True)


def run(install, *args, stdin=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QPSMTPD", "TCP"))}
    env["TCPREMOTEIP"] = "192.0.2.7"
    return subprocess.run([sys.executable, os.path.join(install, "qpsmtpd.py"), *args], input=stdin,
                          capture_output=True, env=env, timeout=30)


def test_debian_default_config_delivers_mail(debian):
    install, base = debian
    dialogue = (b"HELO client.example\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<user@example.test>\r\n"
                b"DATA\r\nSubject: hi\r\nFrom: a@sender.example\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    result = run(install, stdin=dialogue)
    replies = result.stdout.decode().split("\r\n")
    assert replies[0].startswith("220 ") and any(r.startswith("250 Queued") for r in replies), result.stdout
    assert len(os.listdir(base / "Maildir" / "new")) == 1
    log = (base / "log" / "qpsmtpd.log").read_text()
    for old, target in OLD_NAMES.items():
        assert log.count(f"plugin {old} is the old name of {target}") == 1, old
    assert "SyntaxError" not in log and "SyntaxError" not in result.stderr.decode()


def test_debian_default_config_passes_the_check(debian):
    install, _base = debian
    result = run(install, "--check-config")
    out = result.stdout.decode()
    assert result.returncode == 0, out
    assert out.count("note   plugins: check_") == len(OLD_NAMES)
