"""PROXY protocol v1/v2 before the greeting (issue 17): the header parser, sessions over pipes
(the pipe's peer is 127.0.0.1, a trusted balancer when config/proxy_trusted says so), and real
haproxy (send-proxy, send-proxy-v2, TLS terminated with send-proxy-v2-ssl-cn) and stunnel4
(protocol = proxy) in front of qpsmtpd.py under tcpserver and under the forkserver."""

from __future__ import annotations

import smtplib
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

import pytest

from components import QMAIL_QUEUE_DOUBLE, qq_double_messages, tcpserver
from components_modern import haproxy, stunnel
from deploy_support import private_install, remove_install, run_pipe
from qpsmtpd.proxy import ProxyError, parse_v1, parse_v2, V2_SIGNATURE

# relay decisions show which address the hooks saw: only the proxied client 127.0.0.5 may relay
CONFIG = {"plugins": ["relay", "rcpt_ok", "queue/qmail-queue"], "rcpthosts": ["example.test"],
          "relayclients": ["127.0.0.5", "::1"], "proxy_trusted": ["127.0.0.1", "::1"],
          "logging": ["logging/warn LOGINFO"]}
HEADER_V1 = "PROXY TCP4 127.0.0.5 198.51.100.1 50060 25"


def v2_header(source: bytes = bytes([127, 0, 0, 5]), dest: bytes = bytes([198, 51, 100, 1]),
              ports: tuple[int, int] = (50060, 25), command: int = 1, tlvs: bytes = b"") -> bytes:
    body = source + dest + ports[0].to_bytes(2, "big") + ports[1].to_bytes(2, "big") + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, 0x11]) + len(body).to_bytes(2, "big") + body


# -- the parser ------------------------------------------------------------------
def test_v1_fields():
    header = parse_v1(b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 25")
    assert (header.remote_ip, header.remote_port, header.local_ip, header.local_port) == (
        "2001:db8::7", "4000", "2001:db8::1", "25")
    assert parse_v1(b"PROXY UNKNOWN").command == "UNKNOWN"


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3", b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2", b"PROXY TCP4 ::1 ::1 1 2",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2", b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2", b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 \xb2 2", b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2"])
def test_v1_malformed(line):
    with pytest.raises(ProxyError):
        parse_v1(line)


def test_v2_fields_and_tls_tlv():
    ssl_sub = bytes([0x21]) + (7).to_bytes(2, "big") + b"TLSv1.3" + bytes([0x23]) + (6).to_bytes(2, "big") + b"AES256"
    ssl_tlv = bytes([0x20]) + (5 + len(ssl_sub)).to_bytes(2, "big") + bytes([1, 0, 0, 0, 0]) + ssl_sub
    header = parse_v2(v2_header(tlvs=ssl_tlv))
    assert (header.remote_ip, header.remote_port, header.local_port) == ("127.0.0.5", "50060", "25")
    assert header.tls_facts() == {"verify": "0", "version": "TLSv1.3", "cipher": "AES256"}
    assert parse_v2(v2_header(command=0)).command == "LOCAL"


@pytest.mark.parametrize("data", [
    v2_header()[:-1],                                           # truncated
    v2_header()[:12] + bytes([0x31]) + v2_header()[13:],        # version 3
    v2_header()[:12] + bytes([0x22]) + v2_header()[13:],        # command 2
    v2_header()[:13] + bytes([0x12]) + v2_header()[14:],        # UDP
    v2_header(tlvs=bytes([0x20, 0, 9, 1])),                     # TLV past the end
])
def test_v2_malformed(data):
    with pytest.raises(ProxyError):
        parse_v2(data)


# -- sessions over pipes (the peer is 127.0.0.1) ----------------------------------------
@pytest.fixture(scope="module")
def install():
    base = private_install(CONFIG)
    yield base
    remove_install(base)


def relay_session(header: bytes, install: Path) -> tuple[list[str], list[str]]:
    commands = "".join(line + "\r\n" for line in ["EHLO client.test", "MAIL FROM:<a@sender.test>",
                                                   "RCPT TO:<x@elsewhere.test>", "QUIT"]).encode()
    result = run_pipe(install, header + commands)
    return result.replies(), result.log_lines()


def test_v1_header_sets_the_client_before_any_hook(install):
    replies, log = relay_session(HEADER_V1.encode() + b"\r\n", install)
    assert replies[0].startswith("220 ")
    assert any(line.startswith("250 ") and "recipient ok" in line for line in replies)  # relay from 127.0.0.5
    assert any("Connection from [127.0.0.5] [127.0.0.5]" in line for line in log)


def test_v2_header_sets_the_client(install):
    replies, _log = relay_session(v2_header(), install)
    assert any("recipient ok" in line for line in replies)


def test_v2_local_keeps_the_balancer(install):
    replies, _log = relay_session(v2_header(command=0), install)
    assert replies[0].startswith("220 ")
    assert any(line.startswith("550 ") for line in replies)  # 127.0.0.1 may not relay


@pytest.mark.parametrize("start", [b"EHLO client.test\r\n", b"PROXY TCP4 127.0.0.5 1.2.3.4 9 25 junk\r\n",
                                   b"PROXY TCP4 " + b"1" * 120 + b"\r\n", v2_header()[:20], b""])
def test_trusted_peer_without_a_valid_header_is_closed(install, start):
    result = run_pipe(install, start)
    assert result.stdout == b""  # no greeting, nothing
    assert any("(connect) proxy: reject 127.0.0.1:" in line for line in result.log_lines()), result.log_lines()


def test_header_from_an_untrusted_peer_is_refused():
    base = private_install({**CONFIG, "proxy_trusted": ["192.0.2.0/24"]})
    try:
        result = run_pipe(base, [HEADER_V1, "EHLO client.test", "QUIT"])
    finally:
        remove_install(base)
    assert result.codes()[:2] == [220, 554]
    assert len(result.codes()) == 2  # disconnected
    assert any("proxy: reject 127.0.0.1: 554" in line for line in result.log_lines())


def test_without_proxy_trusted_proxy_is_an_unknown_command():
    base = private_install({key: value for key, value in CONFIG.items() if key != "proxy_trusted"})
    try:
        result = run_pipe(base, [HEADER_V1, "QUIT"])
    finally:
        remove_install(base)
    assert result.codes() == [220, 500, 221]


def test_stunnel_plugin_proxy_on_trusts_loopback():
    config = {key: value for key, value in CONFIG.items() if key != "proxy_trusted"}
    config["plugins"] = ["stunnel proxy on", *config["plugins"]]
    base = private_install(config)
    try:
        replies, log = relay_session(HEADER_V1.encode() + b"\r\n", base)
        off = private_install({**config, "plugins": ["stunnel proxy off", *CONFIG["plugins"]]})
        try:
            plain = run_pipe(off, ["EHLO client.test", "QUIT"])
        finally:
            remove_install(off)
    finally:
        remove_install(base)
    assert any("recipient ok" in line for line in replies)
    assert plain.codes()[0] == 220 and plain.codes()[-1] == 221


def test_tcprules_variables_of_the_balancer_do_not_reach_the_client(install):
    commands = f"{HEADER_V1}\r\nEHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@elsewhere.test>\r\nQUIT\r\n"
    result = run_pipe(install, commands.replace("127.0.0.5", "127.0.0.9").encode(), env={"RELAYCLIENT": ""})
    assert 550 in result.codes()  # the balancer's RELAYCLIENT was not the client's


# -- real balancers under tcpserver ------------------------------------------------


@pytest.fixture(scope="module")
def served():
    queue_dir = Path(tempfile.mkdtemp(prefix="qq-"))
    base = private_install(CONFIG)
    env = {"QMAILQUEUE": str(QMAIL_QUEUE_DOUBLE), "QQ_DOUBLE_DIR": str(queue_dir)}
    with tcpserver([sys.executable, str(base / "qpsmtpd.py")], env=env) as server:
        with haproxy(server.port, modes=("v1", "v2", "v2-tls", "v2-ipv6")) as balancer, \
                stunnel(server.port) as tunnel:
            yield server, balancer, tunnel, queue_dir
    remove_install(base)
    remove_install(queue_dir)


def send_through(port: int, subject: str, tls_cert: Path | None = None) -> None:
    if tls_cert is not None:
        context = ssl.create_default_context(cafile=str(tls_cert))
        client: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=20,
                                                source_address=("127.0.0.5", 0))
    else:
        client = smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=("127.0.0.5", 0))
    with client:
        client.sendmail("a@sender.test", ["x@elsewhere.test"], f"Subject: {subject}\r\n\r\nbody\r\n")


def received_for(queue_dir: Path, subject: str) -> bytes:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for message in qq_double_messages(queue_dir):
            if f"Subject: {subject}".encode() in message.message:
                return message.message
        time.sleep(0.02)
    raise AssertionError(f"{subject} not queued")


@pytest.mark.components
@pytest.mark.parametrize("mode", ["v1", "v2"])
def test_haproxy_passes_the_client(served, mode):
    _server, balancer, _tunnel, queue_dir = served
    send_through(balancer.ports[mode], f"haproxy {mode}")  # relaying works only as 127.0.0.5
    received = received_for(queue_dir, f"haproxy {mode}")
    assert b"(127.0.0.5)" in received.split(b"\n\n")[0] or b"[127.0.0.5]" in received


@pytest.mark.components
def test_haproxy_tls_facts_reach_the_received_line(served):
    _server, balancer, _tunnel, queue_dir = served
    send_through(balancer.ports["v2-tls"], "haproxy tls", tls_cert=balancer.cert)
    received = received_for(queue_dir, "haproxy tls")
    head = received.split(b"\n\n")[0]
    assert b"with ESMTPS" in head and b"127.0.0.5" in head
    assert b"TLS_AES" in head and b"encrypted)" in head  # the cipher haproxy negotiated


@pytest.mark.components
def test_stunnel_proxy_protocol(served):
    _server, _balancer, tunnel, queue_dir = served
    send_through(tunnel.port, "stunnel", tls_cert=tunnel.cert)
    assert b"127.0.0.5" in received_for(queue_dir, "stunnel").split(b"\n\n")[0]


@pytest.mark.components
def test_direct_client_from_a_trusted_address_is_closed_without_greeting(served):
    server, _balancer, _tunnel, _queue_dir = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"EHLO direct.test\r\n")
        assert sock.recv(100) == b""
    assert "no PROXY header" in Path(server.log_path).read_text(errors="replace")


@pytest.mark.components
def test_forkserver_child_reads_the_header_behind_haproxy():
    from test_forkserver import forkserver

    config = {"relayclients": ["127.0.0.5"], "proxy_trusted": ["127.0.0.1"]}
    with forkserver(plugins=["relay", "rcpt_ok"], config=config) as server:
        with haproxy(server.port, modes=("v2",)) as balancer:
            send_through(balancer.ports["v2"], "forked")
            with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
                sock.sendall(b"EHLO direct.test\r\n")
                assert sock.recv(100) == b""  # a trusted peer without a header gets nothing
        delivered = server.delivered()
        assert len(delivered) == 1 and b"(127.0.0.5)" in delivered[0]
        assert "Connection from [127.0.0.5] [127.0.0.5]" in server.log()


def test_a_bad_proxy_trusted_line_is_logged_and_skipped():
    base = private_install({**CONFIG, "proxy_trusted": ["not-a-network", "127.0.0.0/8"]})
    try:
        replies, log = relay_session(HEADER_V1.encode() + b"\r\n", base)
    finally:
        remove_install(base)
    assert any("recipient ok" in line for line in replies)
    assert any("proxy_trusted: 'not-a-network' is not an address or network; ignored" in line for line in log)


def test_the_port_reached_at_the_balancer_does_not_start_smtps():
    """stunnel terminating SMTPS on 465 sends plain SMTP with a header naming port 465: the tls
    plugin must not see 465 as this connection's port (it would start a handshake on plain text)."""
    base = private_install({**CONFIG, "plugins": ["tls", *CONFIG["plugins"]]})
    try:
        result = run_pipe(base, b"PROXY TCP4 127.0.0.5 198.51.100.1 50060 465\r\nEHLO c.test\r\nQUIT\r\n")
    finally:
        remove_install(base)
    assert result.codes() == [220, 250, 221], result.replies()


@pytest.mark.components
def test_haproxy_ipv6_client(served):
    _server, balancer, _tunnel, queue_dir = served
    with smtplib.SMTP("::1", balancer.ports["v2-ipv6"], timeout=20) as client:  # relaying works only as ::1
        client.sendmail("a@sender.test", ["x@elsewhere.test"], "Subject: over ipv6\r\n\r\nbody\r\n")
    assert b"(::1)" in received_for(queue_dir, "over ipv6").split(b"\n\n")[0]
