"""rate_limit: limits hit and reset with a controlled clock (local store and a real Redis),
concurrency across real qpsmtpd.py processes, relay clients, the store down."""

import base64
import time

import pytest

from state_support import (backend, clock, dialogue, log_lines, redis_daemon, reply_codes,  # noqa: F401
                           runnable_install, session, spawn_session)

HOUR = 3600


def rcpts(count, sender="a@sender.test", rcpt="x{}@example.test"):
    return ["HELO client.test", f"MAIL FROM:<{sender}>",
            *(f"RCPT TO:<{rcpt.format(number)}>" for number in range(count)), "QUIT"]


def test_rcpt_limit_hit_and_reset(backend, clock):
    plugin = [f"rate_limit {backend.args()} rcpt 5/1h"]
    first = session(rcpts(3), plugin)
    assert first.codes() == [220, 250, 250, 250, 250, 250, 221]
    second = session(rcpts(3), plugin)
    assert second.codes() == [220, 250, 250, 250, 250, 450, 221]
    assert second.replies()[5][1] == ["Too many recipients from your address, slow down"]
    assert log_lines(second, "fail, 192.0.2.1 rcpt 6/5 in 1h")
    assert session(rcpts(1), plugin, ip="192.0.2.2").codes()[3] == 250  # another client
    clock.advance(HOUR)  # the next window starts from zero
    assert session(rcpts(3), plugin).codes() == [220, 250, 250, 250, 250, 250, 221]


def test_mail_limit_451(backend, clock):
    plugin = [f"rate_limit {backend.args()} mail 2/10m"]
    lines = ["HELO c.test", "MAIL FROM:<a@s.test>", "RSET", "MAIL FROM:<a@s.test>", "RSET",
             "MAIL FROM:<a@s.test>", "QUIT"]
    result = session(lines, plugin)
    assert result.codes() == [220, 250, 250, 250, 250, 250, 451, 221]
    assert result.replies()[6][1] == ["Too many messages from your address, slow down"]
    clock.advance(600)
    assert session(lines[:2] + ["QUIT"], plugin).codes()[2] == 250


def test_sender_and_recipient_limits(backend, clock):
    plugin = [f"rate_limit {backend.args()} sender 3/1d recipient 2/1h"]
    assert session(rcpts(3), plugin).codes() == [220, 250, 250, 250, 250, 250, 221]
    # the same sender from another client: over its daily limit
    other = session(rcpts(1), plugin, ip="198.51.100.1")
    assert other.replies()[3] == (450, ["Too many recipients for sender <a@sender.test>, slow down"])
    # one recipient address, many senders: over its limit at the third message
    to_one = [session(rcpts(1, sender=f"s{n}@other.test", rcpt="boss@example.test"), plugin, ip=f"203.0.113.{n}")
              for n in range(3)]
    assert [result.codes()[3] for result in to_one] == [250, 250, 450]
    assert to_one[2].replies()[3][1] == ["Too much mail for <boss@example.test>, try again later"]


def test_network_grouping(backend, clock):
    plugin = [f"rate_limit {backend.args()} rcpt 2/1h network 24"]
    assert session(rcpts(2), plugin, ip="192.0.2.1").codes()[3:5] == [250, 250]
    result = session(rcpts(1), plugin, ip="192.0.2.200")
    assert result.codes()[3] == 450
    assert log_lines(result, "192.0.2.0/24 rcpt 3/2 in 1h")
    assert session(rcpts(1), plugin, ip="192.0.3.1").codes()[3] == 250


def test_connect_rate_421(backend, clock):
    plugin = [f"rate_limit {backend.args()} connect 2/1m"]
    lines = ["HELO c.test", "QUIT"]
    assert session(lines, plugin).codes() == [220, 250, 221]
    assert session(lines, plugin).codes() == [220, 250, 221]
    refused = session(lines, plugin)
    assert refused.replies() == [(421, ["Too many connections from your address, try again later"])]
    clock.advance(60)
    assert session(lines, plugin).codes() == [220, 250, 221]


def test_relay_clients_immune_but_users_counted(backend, clock, tmp_path):
    plugin = ["relay", f"rate_limit {backend.args()} rcpt 1/1h"]
    result = session(rcpts(3), plugin, relayclients=["192.0.2.1"])
    assert result.codes() == [220, 250, 250, 250, 250, 250, 221]

    plain = base64.b64encode(b"\0alice@example.test\0secret").decode()
    lines = ["EHLO client.test", f"AUTH PLAIN {plain}", "MAIL FROM:<alice@example.test>",
             "RCPT TO:<a@elsewhere.test>", "RCPT TO:<b@elsewhere.test>", "RCPT TO:<c@elsewhere.test>", "QUIT"]
    plugins = ["auth/auth_flat_file", f"rate_limit {backend.args()} rcpt 1/1h user 2/1h"]
    authed = session(lines, plugins, flat_auth_pw=["alice@example.test:secret"])
    assert authed.codes() == [220, 250, 235, 250, 250, 250, 450, 221]
    assert authed.replies()[6][1] == ["Too many recipients for user alice@example.test, slow down"]


def test_reject_0_only_logs(backend, clock):
    result = session(rcpts(3), [f"rate_limit {backend.args()} rcpt 1/1h reject 0"])
    assert result.codes() == [220, 250, 250, 250, 250, 250, 221]
    assert log_lines(result, "fail, tolerated (reject 0), 192.0.2.1 rcpt 3/1 in 1h")


def test_bad_rate_is_reported(backend, clock):
    result = session(rcpts(2), [f"rate_limit {backend.args()} rcpt lots"])
    assert result.codes() == [220, 250, 250, 250, 250, 221]
    assert log_lines(result, "rcpt lots: not COUNT/PERIOD")


@pytest.mark.components  # redis-py
def test_store_down_does_not_limit(clock):
    from components import free_port
    start = time.monotonic()
    result = session(rcpts(3), [f"rate_limit redis 127.0.0.1:{free_port()} rcpt 1/1h concurrency 1 mail 1/1h"])
    assert time.monotonic() - start < 3
    assert result.codes() == [220, 250, 250, 250, 250, 250, 221]
    assert log_lines(result, "rate_limit store unusable")


def test_concurrency_across_processes(backend):
    """Real qpsmtpd.py processes: two open connections from one IP; the third gets 421."""
    install = runnable_install([f"rate_limit {backend.args()} concurrency 2", "rcpt_ok"])
    held = [spawn_session(install, []) for _ in range(2)]
    try:
        for proc in held:
            assert proc.stdout.readline().startswith(b"220 ")
        third = spawn_session(install, [])
        out, _err = third.communicate(dialogue(["HELO c.test", "QUIT"]), timeout=20)
        assert reply_codes(out) == [421]
        assert b"Too many concurrent connections from your address" in out
        other_ip = spawn_session(install, [], ip="192.0.2.77")
        out, _err = other_ip.communicate(dialogue(["HELO c.test", "QUIT"]), timeout=20)
        assert reply_codes(out) == [220, 250, 221]
    finally:
        for proc in held:
            out, err = proc.communicate(dialogue(["QUIT"]), timeout=20)
            assert reply_codes(out)[-1] == 221, err
    after = spawn_session(install, [])  # the slots were given back
    out, _err = after.communicate(dialogue(["HELO c.test", "QUIT"]), timeout=20)
    assert reply_codes(out) == [220, 250, 221]


def test_ipv6_network_grouping(backend, clock):
    plugin = [f"rate_limit {backend.args()} rcpt 1/1h network6 64"]
    assert session(rcpts(1), plugin, ip="2001:db8:1:2::10").codes()[3] == 250
    result = session(rcpts(1), plugin, ip="2001:db8:1:2::99")
    assert result.codes()[3] == 450
    assert log_lines(result, "2001:db8:1:2::/64 rcpt 2/1 in 1h")
    assert session(rcpts(1), plugin, ip="2001:db8:1:3::10").codes()[3] == 250
