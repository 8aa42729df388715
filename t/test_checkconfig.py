"""`qpsmtpd.py --check-config` finds what would fail at run time (issues 16 and 12): each case
fails with its message and passes once fixed.  Run as the real program on private installs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qpsmtpd.testing import make_install

ARGS_PLUGIN = '''"""A plugin with an arguments spec."""
from qpsmtpd.args import Arguments, Option
from qpsmtpd.plugin import Plugin


class Typed(Plugin):
    arguments = Arguments(Option("reject", kind="int", default=1, maximum=2), Option("action", choices=("deny", "log")))
'''
NEEDS_LIBRARY = '''from qpsmtpd.plugin import Plugin


class NeedsLibrary(Plugin):
    requires = ("qpsmtpd_no_such_module",)
'''
BLOCKER = '''import os, sys
BLOCKED = set(os.environ.get("QP_TEST_BLOCK", "").split(","))


class _Block:
    """Makes the named modules not installed, as on a machine without them."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Block())
'''
BASE = {"plugins": ["rcpt_ok", "queue/maildir {dir}/Maildir"], "rcpthosts": ["example.test"]}


@pytest.fixture
def site(tmp_path):
    """make(config) -> a private runnable install; run(*args) -> the check's CompletedProcess."""
    installs = []
    own_plugins = tmp_path / "own"
    own_plugins.mkdir()
    (own_plugins / "typed.py").write_text(ARGS_PLUGIN)
    (own_plugins / "needs_library.py").write_text(NEEDS_LIBRARY)
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(BLOCKER)

    class Site:
        dir = tmp_path
        install = None

        def make(self, config):
            config = {name: [line.replace("{dir}", str(tmp_path)) for line in value] if isinstance(value, list)
                      else value.replace("{dir}", str(tmp_path)) for name, value in config.items()}
            config.setdefault("plugin_dirs", [str(own_plugins)])
            self.install = make_install(config, runnable=True)
            installs.append(self.install)
            return self.install

        def config(self, name, value):
            path = Path(self.install, "config", name)
            text = value if isinstance(value, str) else "".join(line + "\n" for line in value)
            path.write_text(text.replace("{dir}", str(tmp_path)))

        def run(self, *args, block=None, env=None, stdin=None):
            full = {k: v for k, v in os.environ.items() if not k.startswith(("QPSMTPD", "TCP", "PYTHONPATH"))}
            full["QMAIL"] = str(tmp_path / "qmail")
            if block:
                full.update(PYTHONPATH=str(tmp_path / "block"), QP_TEST_BLOCK=block)
            full.update(env or {})
            command = [sys.executable, os.path.join(self.install, "qpsmtpd.py"), *args]
            return subprocess.run(command, capture_output=True, text=True, env=full, timeout=30, input=stdin)

    yield Site()
    for install in installs:
        shutil.rmtree(install, ignore_errors=True)


def check(site, *args, **kwargs):
    result = site.run("--check-config", *args, **kwargs)
    return result.returncode, result.stdout, result.stderr


def test_good_config_exits_0_and_names_every_directory(site):
    site.make(BASE)
    code, out, _err = check(site)
    assert code == 0, out
    assert f"install config/  {site.install}/config (exists)" in out
    assert f"qmail control    {site.dir}/qmail/control (missing)".replace("qmail control   ", "$QMAIL/control  ") in out
    assert "$QPSMTPD_CONFIG" not in out
    assert f"plugin dirs, in search order:\n  {site.dir}/own (exists)\n  {site.install}/plugins (exists)\n" in out
    assert out.rstrip().endswith("no problems")


def test_banner_names_qpsmtpd_config_dir(site, tmp_path):
    site.make(BASE)
    other = tmp_path / "etc-qpsmtpd"
    other.mkdir()
    (other / "me").write_text("mx.example.test\n")
    code, out, _ = check(site, env={"QPSMTPD_CONFIG": str(other)})
    assert code == 0 and f"$QPSMTPD_CONFIG  {other} (exists)" in out
    code, out, _ = check(site, str(other))
    assert code == 0 and f"$QPSMTPD_CONFIG  {other} (exists)" in out
    assert out.index("$QPSMTPD_CONFIG") < out.index("install config/") < out.index("$QMAIL/control")


def test_cannot_run_exits_2(site, tmp_path):
    site.make(BASE)
    assert check(site, str(tmp_path / "nope"))[0] == 2
    code, _out, err = check(site, "--user", "no-such-user-here")
    assert code == 2 and "no such user: no-such-user-here" in err
    assert check(site, "--bogus")[0] == 2


def test_unknown_argument_and_bad_value(site):
    site.make({**BASE, "plugins": ["typed bogusarg 1 reject 9", *BASE["plugins"]]})
    code, out, _ = check(site)
    assert code == 1
    assert "ERROR  plugins: typed bogusarg 1 reject 9: unknown argument 'bogusarg'" in out
    assert "ERROR  plugins: typed bogusarg 1 reject 9: reject: 9 is above the maximum 2" in out
    site.config("plugins", ["typed reject 2 action log", *BASE["plugins"]])
    code, out, _ = check(site)
    assert code == 0 and "ok     plugins: typed reject 2 action log" in out


@pytest.mark.components  # the "fixed" half needs pyspf and dnspython installed
def test_missing_optional_library_fails_at_load_and_in_the_check(site):
    site.make({**BASE, "plugins": ["sender_permitted_from", *BASE["plugins"]]})
    code, out, _ = check(site, block="spf")
    assert code == 1
    assert "sender_permitted_from cannot run: the Python module 'spf' is not installed " \
           "(Debian: apt-get install python3-spf; pip: pip install pyspf)" in out
    session = site.run(block="spf", stdin="HELO x\r\n")
    assert session.stdout.startswith("421 ")
    assert "python3-spf" in session.stderr and "pyspf" in session.stderr
    assert check(site)[0] == 0  # the library present: fine
    site.config("plugins", ["dkim", *BASE["plugins"]])
    code, out, _ = check(site, block="dkim,dns")
    assert "python3-dkim" in out and "dkimpy" in out and "python3-dnspython" in out and "dnspython" in out
    site.config("plugins", ["helo policy strict", *BASE["plugins"]])
    code, out, _ = check(site, block="dns")
    assert code == 1 and "helo cannot run" in out and "python3-dnspython" in out
    site.config("plugins", ["helo policy lenient", *BASE["plugins"]])
    assert check(site, block="dns")[0] == 0  # lenient asks no DNS
    site.config("plugins", ["needs_library", *BASE["plugins"]])
    code, out, _ = check(site)
    assert code == 1 and "'qpsmtpd_no_such_module' is not installed" in out


def make_certificate(directory: Path, name: str, expired: bool = False) -> tuple[str, str]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    if not expired:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "30", "-subj", "/CN=mx.example.test"], check=True, capture_output=True)
        return str(cert), str(key)
    ca = directory / f"{name}-ca"
    ca.mkdir()
    (ca / "index.txt").write_text("")
    (ca / "serial").write_text("01\n")
    (ca / "ca.cnf").write_text(f"[ca]\ndefault_ca = d\n[d]\ndatabase = {ca}/index.txt\nnew_certs_dir = {ca}\n"
                               f"serial = {ca}/serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(ca / "r.csr"), "-subj", "/CN=mx.example.test"], check=True, capture_output=True)
    subprocess.run(["openssl", "ca", "-batch", "-config", str(ca / "ca.cnf"), "-selfsign", "-keyfile", str(key),
                    "-in", str(ca / "r.csr"), "-out", str(cert), "-startdate", "20200101000000Z",
                    "-enddate", "20200102000000Z"], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.mark.components
def test_tls_certificate_and_key(site, tmp_path):
    cert, key = make_certificate(tmp_path, "good")
    other_cert, other_key = make_certificate(tmp_path, "other")
    old_cert, old_key = make_certificate(tmp_path, "old", expired=True)
    site.make({**BASE, "plugins": [f"tls {tmp_path}/missing.crt {key}", *BASE["plugins"]], "tls_before_auth": "1"})
    code, out, _ = check(site)
    assert code == 1 and f"TLS certificate {tmp_path}/missing.crt is missing: STARTTLS would not be offered" in out
    assert "tls_before_auth is set: without TLS, AUTH would never be offered" in out
    site.config("plugins", [f"tls {cert} {other_key}", *BASE["plugins"]])
    code, out, _ = check(site)
    assert code == 1 and "do not go together" in out
    site.config("plugins", [f"tls {old_cert} {old_key}", *BASE["plugins"]])
    code, out, _ = check(site)
    assert code == 1 and f"TLS certificate {old_cert} expired on 2020-01-02" in out
    site.config("plugins", [f"tls {cert} {key}", *BASE["plugins"]])
    code, out, _ = check(site)
    assert code == 0, out


@pytest.mark.parametrize("name, bad, message, good", [
    ("dns_servers", ["127.0.0.1", "127.0.0.1:53x"], "not an address, address:port", ["127.0.0.1", "[::1]:5353"]),
    ("dnsbl_zones", ["zen.example.org 127.0.0.2"], "a space is not allowed", ["zen.example.org:Listed %IP%"]),
    ("rhsbl_zones", ["bad..zone.example"], "not a DNS zone",
     ["rhs.example.org", "dsn.example.org does not accept bounces. This violates RFC 821/2505/2821"]),
    ("uribl_zones", ["multi.example.org 2,x deny"], "neither a mask nor an action", ["multi.example.org 2,4 deny"]),
    ("relayclients", ["192.168.1.300"], "not an IP address",  # the good ones: the Perl sample's forms
     ["127.0.0.1", " 192.0. ", "192.168", "10.0.0.0/8", "::1", "2001:0DB8", "2001:DB8::1", "2001:DB8::1/32",
      "2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8:"]),
    ("rcpthosts", ["example..test"], "not a domain", ["example.test", ".example.test"]),
    ("badmailfrom", ["^(unclosed@"], "not a valid regular expression", ["^ok.*@example\\.test$", "@spam.example"]),
    ("badrcptto_patterns", ["[x  no"], "not a valid regular expression", ["!  no bang paths"]),
    ("badhelo", ["(unclosed"], "not a valid regular expression", ["^dynamic-.*", "yahoo.com"]),
    ("rcpt_regexp", ["/(x/ 550 no"], "not a valid regular expression", ["/^postmaster@/ 250 ok", "a@b.test 550 no"]),
    ("invalid_resolvable_fromhost", ["10.0.0.0/33"], "not an IP network", ["10.0.0.0/8"]),
    ("databytes", ["50M"], "not a whole number", ["52428800"]),
])
def test_malformed_config_file_lines(site, name, bad, message, good):
    site.make({**BASE, name: bad})
    code, out, _ = check(site)
    assert code == 1, out
    line = [text for text in out.splitlines() if text.startswith(f"ERROR  {name} (")]
    assert line and message in line[0] and f"{site.install}/config/{name} line" in line[0], out
    site.config(name, good)
    code, out, _ = check(site)
    assert code == 0, out


def test_malformed_file_in_qmail_control_is_found(site):
    site.make(BASE)
    os.remove(os.path.join(site.install, "config", "rcpthosts"))
    control = site.dir / "qmail" / "control"
    control.mkdir(parents=True)
    (control / "rcpthosts").write_text("example.test\nexa mple\n")
    code, out, _ = check(site)
    assert code == 1 and f"rcpthosts ({control}/rcpthosts line 2): one domain per line: 'exa mple'" in out


def test_no_queue_plugin_is_a_warning(site):
    site.make({**BASE, "plugins": ["rcpt_ok"]})
    code, out, _ = check(site)
    assert code == 0 and "WARN   no queue plugin" in out and "1 warning(s)" in out


def test_queue_and_log_targets(site, tmp_path):
    site.make({**BASE, "plugins": ["rcpt_ok", "queue/qmail-queue /nonexistent/bin/qmail-queue"],
               "logging": [f"logging/file {tmp_path}/no-such-dir/qpsmtpd.log"]})
    code, out, _ = check(site)
    assert code == 1
    assert "queue program /nonexistent/bin/qmail-queue is missing" in out
    assert f"log directory {tmp_path}/no-such-dir: missing" in out
    (tmp_path / "no-such-dir").mkdir()
    site.config("plugins", ["rcpt_ok", "queue/qmail-queue /bin/true"])
    code, out, _ = check(site)
    assert code == 0, out


def test_old_names_and_perl_plugins(site, tmp_path):
    perl = tmp_path / "perl"
    perl.mkdir()
    (perl / "check_relay").write_text("sub init {\n  my $self = shift;\n  $self->isa_plugin('relay');\n}\n")
    (perl / "mine").write_text("#!perl -w\nuse strict;\nsub hook_rcpt { return DECLINED }\n")
    site.make({**BASE, "plugins": ["check_relay", "mine", *BASE["plugins"]], "plugin_dirs": [str(perl)]})
    code, out, _ = check(site)
    assert code == 1
    assert "note   plugins: check_relay: plugin check_relay is the old name of relay" in out
    assert f"ERROR  plugins: mine: Perl plugin mine ({perl}/mine): port it, see docs/migration.md" in out
    site.config("plugins", ["check_relay", *BASE["plugins"]])
    assert check(site)[0] == 0


@pytest.mark.components  # switches to the user nobody: needs root
def test_checks_as_the_server_user(site):
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="qpcheck-user-"))  # pytest's tmp dirs are root's alone
    try:
        base.chmod(0o755)
        maildir = base / "Maildir"
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True)
        spool = base / "spool"
        spool.mkdir(mode=0o700)
        site.make({**BASE, "plugins": ["rcpt_ok", f"queue/maildir {maildir}"], "spool_dir": str(spool)})
        code, out, _ = check(site)
        assert code == 0, out  # root may write everywhere
        code, out, _ = check(site, "--user", "nobody", env={"QMAIL": str(base / "qmail")})
        assert code == 1 and "as user nobody (uid 65534" in out, out
        assert f"maildir {maildir}/tmp: not writable by this user" in out
        assert f"spool_dir {spool}: not writable by this user" in out
        for path in (maildir, maildir / "tmp", maildir / "new", maildir / "cur", spool):
            os.chown(path, 65534, 65534)
        code, out, _ = check(site, "--user", "nobody", env={"QMAIL": str(base / "qmail")})
        assert code == 0, out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_forward_targets_are_probed(site):
    """A server that is not listening: a warning (exit 0); listening: nothing."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    site.make({**BASE, "plugins": ["rcpt_ok", f"queue/smtp-forward 127.0.0.1 {port}"]})
    code, out, _ = check(site)
    assert code == 0 and f"WARN   queue/smtp-forward: SMTP server 127.0.0.1:{port} does not accept connections" in out
    listener.listen(5)
    try:
        code, out, _ = check(site)
    finally:
        listener.close()
    assert code == 0 and "WARN" not in out, out
    site.config("plugins", ["rcpt_ok", "queue/exim-bsmtp exim_path /nonexistent/rsmtp"])
    code, out, _ = check(site)
    assert code == 1 and "Exim program /nonexistent/rsmtp is missing" in out
