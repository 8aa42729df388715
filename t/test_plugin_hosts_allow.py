"""hosts_allow: networks, return codes, messages (connect hook)."""

from policy_support import HELO, replies, session

RULES = ["192.0.2.4 DECLINED", "192.0.2.0/24 DENY Sorry, known spam only source",
         "198.51.100.0/24 DENYSOFT Not now", "203.0.113.7 OK", "203.0.113.0/24 DENY",
         "2001:db8::/32 DENY_DISCONNECT No IPv6 spam"]


def greeting(ip, plugins=("hosts_allow",)):
    return replies(session(list(plugins), HELO, connection={"remote_ip": ip}, hosts_allow=RULES))


def test_deny_network_with_message():
    assert greeting("192.0.2.9") == ["550 Sorry, known spam only source"]


def test_declined_exception_first():
    assert greeting("192.0.2.4")[0].startswith("220")


def test_denysoft_and_default_text():
    assert greeting("198.51.100.1") == ["450 Not now"]
    assert greeting("203.0.113.8") == ["550 Connection from you denied, bye bye."]


def test_ok_skips_later_connect_plugins():
    assert greeting("203.0.113.7", plugins=("hosts_allow", "random_error 100"))[0].startswith("220")


def test_ipv6_and_unlisted():
    assert greeting("2001:db8::5") == ["550 No IPv6 spam"]
    assert greeting("10.0.0.1")[0].startswith("220")
