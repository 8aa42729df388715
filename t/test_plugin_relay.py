"""relay: relayclients (exact, prefix, CIDR, IPv6), morerelayclients.cdb, norelayclients, RELAYCLIENT, only."""

from qpsmtpd.cdb import write_cdb

from policy_support import MAIL, log_has, replies, session

FOREIGN = MAIL + ["RCPT TO:<x@foreign.test>"]


def relays(ip, plugins=("relay",), **config):
    result = session(list(plugins), FOREIGN, connection={"remote_ip": ip}, **config)
    return replies(result)[3].startswith("250")


def test_no_config_no_relay():
    assert not relays("192.0.2.1")


def test_exact_and_prefix_ipv4():
    assert relays("192.0.2.1", relayclients=["192.0.2.1"])
    assert relays("192.0.2.1", relayclients=["192.0.2."])
    assert relays("192.0.2.1", relayclients=["192."])
    assert not relays("192.0.2.10", relayclients=["192.0.2.1"])
    assert not relays("192.0.20.1", relayclients=["192.0.2."])


def test_cidr_ipv4_inclusive():
    assert relays("10.1.0.5", relayclients=["10.1.0.0/24"])
    assert relays("10.1.0.0", relayclients=["10.1.0.0/24"])
    assert relays("10.1.0.255", relayclients=["10.1.0.0/24"])
    assert relays("10.1.0.7", relayclients=["10.1.0.7/32"])
    assert not relays("10.1.1.5", relayclients=["10.1.0.0/24"])


def test_ipv6_forms():
    ip = "2001:db8:e431:ae06::25"
    assert relays(ip, relayclients=["2001:db8:e431:ae06::/64"])
    assert relays(ip, relayclients=["2001:db8:e431:ae06:"])
    assert relays(ip, relayclients=["2001:0db8:e431:ae06:"])
    assert relays(ip, relayclients=["2001:db8:e431:ae06:0:0:0:25"])
    assert relays(ip, relayclients=[ip])
    assert not relays(ip, relayclients=["2001:db8:e431:ae07:"])
    assert not relays(ip, relayclients=["2001:db8:e431:ae07::/64"])
    assert relays("::1")


def test_morerelayclients_cdb(tmp_path):
    write_cdb(str(tmp_path / "morerelayclients.cdb"), [(b"198.51.100.", b"")])
    assert relays("198.51.100.7", env={"QPSMTPD_CONFIG": str(tmp_path)})
    assert not relays("198.51.101.7", env={"QPSMTPD_CONFIG": str(tmp_path)})


def test_relayclient_env():
    assert relays("192.0.2.1", env={"RELAYCLIENT": ""})


def test_norelayclients_overrides_everything():
    assert not relays("192.0.2.1", relayclients=["192.0.2."], norelayclients=["192.0.2.1"])
    assert not relays("192.0.2.1", env={"RELAYCLIENT": ""}, norelayclients=["192.0.2."])
    assert relays("192.0.2.2", relayclients=["192.0.2."], norelayclients=["192.0.2.1"])


def test_relay_sets_note_read_by_later_plugins(tmp_path):
    (tmp_path / "probe.py").write_text(
        "def hook_mail(self, t, s, p=None):\n"
        "    return DENY, 'note=%s attr=%s' % (self.connection.notes.get('relayclient'), self.connection.relay_client)\n")
    import os
    from qpsmtpd.testing import REPO_DIR, run_session
    result = run_session(MAIL + ["QUIT"], config={"plugins": ["relay", "probe"], "relayclients": ["192.0.2.1"]},
                         plugin_dirs=[str(tmp_path), os.path.join(REPO_DIR, "plugins")])
    assert replies(result)[2] == "550 note=1 attr=True"


def test_log_lines():
    result = session(["relay"], FOREIGN, relayclients=["192.0.2."], loglevel="6")
    assert log_has(result, "relay: pass, octet match in relayclients (192.0.2.)")


def test_only_mode():
    result = session(["relay only 1"], FOREIGN + ["RCPT TO:<x@example.test>"])
    assert replies(result)[3] == "550 relaying denied"
    assert replies(result)[4] == "550 relaying denied"
    result = session(["relay only 1"], FOREIGN, relayclients=["192.0.2.1"])
    assert replies(result)[3] == "250 <x@foreign.test>, recipient ok"


def test_bad_arguments_logged():
    result = session(["relay only"], FOREIGN, loglevel="6")
    assert log_has(result, "Bad arguments")
