"""queue/smtp-forward passes SIZE, BODY, SMTPUTF8 and the DSN parameters on to a next hop that
offers them (issue 17), checked in a real private Postfix's queue file (postcat -e): a too-big
message refused at MAIL (before it is sent), the client's RET/ENVID/NOTIFY/ORCPT and BODY in
Postfix's envelope, a UTF-8 envelope with SMTPUTF8; and RFC 6531's refusal when the next hop
does not offer SMTPUTF8."""

from __future__ import annotations

import subprocess
import time

import pytest

from qpsmtpd.testing import run_session

pytestmark = pytest.mark.components

SIZE_LIMIT = 20000


def postconf(pf, *settings: str) -> None:
    subprocess.run(["postconf", "-c", str(pf.conf_dir), "-e", *settings], check=True, capture_output=True)
    subprocess.run(["postfix", "-c", str(pf.conf_dir), "reload"], check=True, capture_output=True)
    deadline = time.monotonic() + 10
    wanted = [setting.split("=", 1) for setting in settings]
    while time.monotonic() < deadline:  # new smtpd processes read the new main.cf
        import smtplib

        with smtplib.SMTP("127.0.0.1", pf.smtpd_port, timeout=5) as client:
            _code, text = client.ehlo("probe.test")
        offered = text.decode().upper()
        if all((name != "smtputf8_enable" or ("SMTPUTF8" in offered) == (value == "yes"))
               and (name != "message_size_limit" or f"SIZE {value}" in offered) for name, value in wanted):
            return
        time.sleep(0.2)
    raise AssertionError(f"Postfix did not take {settings}")


@pytest.fixture(scope="module")
def pf():
    from components import postfix_private

    with postfix_private(qmqp=False, smtpd=True) as daemon:
        postconf(daemon, "smtputf8_enable=yes", f"message_size_limit={SIZE_LIMIT}")
        yield daemon


@pytest.fixture(autouse=True)
def empty_queue(pf):
    pf.clear_queue()
    yield


def forward(pf, mail: str, rcpts: list[str], body: list[str], **config):
    lines = ["EHLO client.test", mail, *rcpts, "DATA", *body, ".", "QUIT"]
    files = {"me": "mx.example.test", "rcpthosts": ["example.test", "bücher.example"], **config,
             "plugins": ["rcpt_ok", f"queue/smtp-forward 127.0.0.1 {pf.smtpd_port}"]}
    return run_session(lines, config=files)


def envelope(pf, queue_id: str) -> str:
    return subprocess.run(["postcat", "-c", str(pf.conf_dir), "-e", "-q", queue_id], capture_output=True,
                          text=True, check=True).stdout


def test_size_lets_the_next_hop_refuse_at_mail(pf):
    result = forward(pf, "MAIL FROM:<a@client.test>", ["RCPT TO:<x@example.test>"],
                     ["Subject: big", "", *["x" * 998] * 25])
    code, lines = result.replies()[-2]
    assert code == 554 and "MAIL: 552 5.3.4" in lines[0], lines
    assert pf.queue_ids() == []


def test_body_dsn_and_smtputf8_reach_postfix(pf):
    result = forward(pf, "MAIL FROM:<jörg@bücher.example> SMTPUTF8 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1",
                     ["RCPT TO:<ünï@bücher.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x+40example.test"],
                     ["Subject: grüße", "", "hällo"], dsn="1")
    assert result.replies()[-2][0] == 250, result.replies()
    [queue_id] = pf.queue_ids()
    text = envelope(pf, queue_id)
    assert "sender: jörg@bücher.example" in text and "recipient: ünï@bücher.example" in text
    assert "envelope_id=QQ+1" in text and "ret_flags=2" in text       # RET=HDRS
    assert "dsn_orig_rcpt=rfc822;x@example.test" in text and "notify_flags=10" in text  # SUCCESS|DELAY
    assert "encoding=8bit" in text                                    # BODY=8BITMIME


def test_dsn_parameters_stay_here_when_config_dsn_is_off(pf):
    result = forward(pf, "MAIL FROM:<a@client.test> RET=HDRS", ["RCPT TO:<x@example.test> NOTIFY=NEVER"],
                     ["Subject: plain", "", "x"])
    assert result.replies()[-2][0] == 250
    [queue_id] = pf.queue_ids()
    assert "ret_flags" not in envelope(pf, queue_id)


def test_no_smtputf8_at_the_next_hop(pf):
    postconf(pf, "smtputf8_enable=no")
    try:
        utf8 = forward(pf, "MAIL FROM:<jörg@bücher.example> SMTPUTF8", ["RCPT TO:<x@example.test>"],
                       ["Subject: x", "", "y"], enhancedstatuscodes="1")
        ascii_only = forward(pf, "MAIL FROM:<a@client.test> SMTPUTF8", ["RCPT TO:<x@example.test>"],
                             ["Subject: plain", "", "y"])
        utf8_header = forward(pf, "MAIL FROM:<a@client.test> SMTPUTF8", ["RCPT TO:<x@example.test>"],
                              ["Subject: grüße", "", "y"], enhancedstatuscodes="1")
    finally:
        postconf(pf, "smtputf8_enable=yes")
    assert utf8.replies()[-2] == (553, ["5.6.7 Unable to queue message (Non-ASCII addresses not permitted: "
                                        "the next hop does not offer SMTPUTF8)"])
    assert utf8_header.replies()[-2][0] == 554 and utf8_header.replies()[-2][1][0].startswith("5.6.9 ")
    assert ascii_only.replies()[-2][0] == 250
    assert len(pf.queue_ids()) == 1  # only the ASCII one went on
