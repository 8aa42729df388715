"""Relay battery: nothing but a relay decision lets mail out to a foreign domain.

Part 1 (in-process): every way of being whitelisted (hosts, CIDR blocks,
WHITELISTCLIENT, HELO, forged senders from a whitelisted domain, whitelisted
recipients, per_recipient mode, DNS whitelists through a real dnsmasq) is
combined with foreign recipients and with routing tricks in local
recipients; each must get `550 Relaying denied`.  Relay clients keep relaying.

Part 2 (components): the accepted addresses go through queue/smtp-forward
into a real Postfix (its default next-hop settings, qpsmtpd in its
mynetworks, as a front end would be): every address arrives in its RFC 5321
form, nothing is routed onwards, and no quoted local part adds ESMTP
parameters to the next hop's MAIL command.
"""

import pytest

from policy_support import replies, session

FOREIGN = ["<victim@foreign.test>", "<victim@FOREIGN.test>", "<victim@[198.51.100.7]>",
           "<@example.test:victim@foreign.test>"]
ROUTED = ['<"victim@foreign.test"@example.test>', "<victim%foreign.test@example.test>",
          "<foreign.test!victim@example.test>", '<"victim%foreign.test"@example.test>']
LOCAL = ["<x@example.test>", "<postmaster>", '<"x y"@example.test>', "<x@[192.0.2.25]>"]

WHITELISTINGS = {
    "host": (["whitelist"], {"whitelisthosts": ["192.0.2.1"]}),
    "block": (["whitelist"], {"whitelisthosts": ["192.0.2.0/24"]}),
    "client env": (["whitelist"], {"env": {"WHITELISTCLIENT": "1"}}),
    "helo": (["whitelist"], {"whitelisthelo": ["client.test"]}),
    "sender domain": (["whitelist"], {"whitelistsenders": ["trusted.test"]}),
    "recipient domain": (["whitelist"], {"whitelistrcpt": ["foreign.test", "example.test"]}),
    "per_recipient host": (["whitelist per_recipient 1"], {"whitelisthosts": ["192.0.2.1"]}),
    "per_recipient sender": (["whitelist per_recipient 1"], {"whitelistsenders": ["trusted.test"]}),
    "per_recipient helo": (["whitelist per_recipient 1"], {"whitelisthelo": ["client.test"]}),
    "per_recipient rcpt": (["whitelist per_recipient 1"], {"whitelistrcpt": ["foreign.test"]}),
}


def rcpt_replies(plugins, recipients, **config):
    lines = ["HELO client.test", "MAIL FROM:<forged@trusted.test>"] + [f"RCPT TO:{r}" for r in recipients]
    return replies(session(plugins, lines, **config))[3:3 + len(recipients)]


@pytest.mark.parametrize("name", sorted(WHITELISTINGS))
def test_whitelisting_never_relays(name):
    plugins, config = WHITELISTINGS[name]
    got = rcpt_replies(list(plugins), FOREIGN + ROUTED, **config)
    assert got == ["550 Relaying denied (#5.7.1)"] * len(FOREIGN + ROUTED)


@pytest.mark.parametrize("name", sorted(WHITELISTINGS))
def test_whitelisted_local_mail_still_accepted(name):
    plugins, config = WHITELISTINGS[name]
    got = rcpt_replies(list(plugins), LOCAL, **config)
    assert all(reply.startswith("250") for reply in got), got


def test_routing_in_local_parts_refused_for_everyone_but_relay_clients():
    assert rcpt_replies([], ROUTED) == ["550 Relaying denied (#5.7.1)"] * len(ROUTED)
    got = rcpt_replies(["relay"], ROUTED + FOREIGN, relayclients=["192.0.2.1"])
    assert all(reply.startswith("250") for reply in got), got


def test_relay_clients_and_auth_still_relay():
    got = rcpt_replies(["relay"], FOREIGN, env={"RELAYCLIENT": ""})
    assert all(reply.startswith("250") for reply in got), got
    import base64

    plain = base64.b64encode(b"\0alice@client.test\0secret").decode()
    lines = ["EHLO client.test", f"AUTH PLAIN {plain}", "MAIL FROM:<alice@client.test>",
             "RCPT TO:<victim@foreign.test>"]
    got = replies(session(["auth/auth_flat_file"], lines, flat_auth_pw=["alice@client.test:secret"]))
    assert got[2].startswith("235") and got[4].startswith("250"), got
    got = replies(session(["auth/auth_flat_file", "whitelist"], lines[:1] + lines[2:],
                          flat_auth_pw=["alice@client.test:secret"], whitelistsenders=["client.test"]))
    assert got[3] == "550 Relaying denied (#5.7.1)", got


@pytest.mark.components
def test_dns_whitelisted_host_never_relays():
    from dns_plugin_helpers import session as dns_session
    from dns_testzone import dns_server

    with dns_server(['txt-record=1.2.0.192.wl.test,"partner"']) as dns:
        lines = ["HELO client.test", "MAIL FROM:<forged@trusted.test>",
                 "RCPT TO:<victim@foreign.test>", "RCPT TO:<x@example.test>", "QUIT"]
        for plugins in (["dns_whitelist_soft"], ["dns_whitelist_soft", "whitelist"]):
            result = dns_session(dns, [*plugins, "rcpt_ok"], lines, ip="192.0.2.1",
                                 whitelist_zones=["wl.test"])
            got = [f"{code} {' '.join(text)}" for code, text in result.replies()]
            assert any("is whitelisted: partner" in line for line in result.log)
            assert got[3] == "550 Relaying denied (#5.7.1)" and got[4].startswith("250"), got


# -- part 2: through queue/smtp-forward into a real Postfix ----------------------------------

@pytest.fixture(scope="module")
def postfix():
    from components import postfix_private

    with postfix_private(qmqp=False, smtpd=True) as daemon:
        yield daemon


def forward(pf, sender, recipients, plugins=(), **config):
    from qpsmtpd.testing import run_session

    lines = (["EHLO client.test", f"MAIL FROM:{sender}"] + [f"RCPT TO:{r}" for r in recipients]
             + ["DATA", "Subject: battery", "", "body", ".", "QUIT"])
    files = {"me": "mx.example.test", "rcpthosts": ["example.test"], **config,
             "plugins": [*plugins, "rcpt_ok", f"queue/smtp-forward 127.0.0.1 {pf.smtpd_port}"]}
    return run_session(lines, config=files)


@pytest.mark.components
def test_quoted_local_parts_reach_postfix_as_one_address_each(pf):
    """A `>` or `=` in a quoted local part used to end the path on the next hop and add
    parameters (`MAIL FROM:<x>RET=FULL@...>`)."""
    recipients = ['<"a>NOTIFY=NEVER"@example.test>', '<"john.doe."@example.test>', '<"x\\"y"@example.test>',
                  "<plain@example.test>"]
    result = forward(pf, '<"x>RET=FULL"@client.test>', recipients)
    assert result.codes()[-2] == 250, result.lines()
    [queue_id] = pf.queue_ids()
    held = pf.read(queue_id)
    assert held.sender == "x>RET=FULL@client.test"
    assert sorted(held.recipients) == sorted(['a>NOTIFY=NEVER@example.test', "john.doe.@example.test",
                                              'x"y@example.test', "plain@example.test"])


@pytest.mark.components
@pytest.mark.parametrize("plugins,config", [((), {}), (("whitelist",), {"whitelisthosts": ["192.0.2.1"]}),
                                            (("whitelist",), {"whitelistsenders": ["client.test"]})])
def test_routed_and_foreign_recipients_never_reach_the_next_hop(pf, plugins, config):
    result = forward(pf, "<a@client.test>", ROUTED + FOREIGN[:1] + ["<ok@example.test>"], plugins, **config)
    codes = result.codes()
    assert codes[3:3 + len(ROUTED) + 1] == [550] * (len(ROUTED) + 1)
    assert codes[-2] == 250
    [queue_id] = pf.queue_ids()
    assert pf.read(queue_id).recipients == ["ok@example.test"]
