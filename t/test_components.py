"""Self-tests of the real-component helpers in t/components.py and of the
qmail-queue test double in t/bin/qmail-queue-double.

Each test starts a real daemon, checks that it answers its protocol and that
it stops. They need root and the packages installed by .ci/run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import components as c  # noqa: E402

MESSAGE = (b"From: Sender <s@example.com>\n"
           b"To: r1@example.org\n"
           b"Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
           b"Message-Id: <test.1@example.com>\n"
           b"Subject: component test\n"
           b"X-Long: " + b"x" * 3000 + b"\n"
           b"\n"
           b"body line 1\n"
           b".line starting with a dot\n"
           b"\n"
           b"last line\n")


def gone(pid: int) -> bool:
    """True if pid no longer runs (zombies count as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def read_pid(sock: socket.socket) -> int:
    """Read the server's "got=... pid=N ..." line and return N."""
    reply = b""
    while not re.search(rb"pid=\d+ .*\n", reply):
        chunk = sock.recv(4096)
        assert chunk, reply
        reply += chunk
    return int(re.search(rb"pid=(\d+)", reply).group(1))


def write_script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(body)
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------
# generic failure behaviour
# --------------------------------------------------------------------------


def test_missing_binary_raises() -> None:
    with pytest.raises(c.ComponentError, match="not installed"):
        c.find_binary("no-such-program-qpsmtpd-test")


def test_early_exit_raises_with_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "log"
    proc = c._spawn(["/bin/sh", "-c", "echo broken config >&2; exit 3"], log)
    daemon = c.Daemon("fake", proc, tmp_path, log)
    with pytest.raises(c.ComponentError, match=r"(?s)exited with status 3.*broken config"):
        daemon.wait_ready(lambda: False, timeout=5)


def test_relative_program_rejected() -> None:
    with pytest.raises(ValueError, match="absolute"):
        with c.tcpserver(["python3", "x.py"]):
            pass


# --------------------------------------------------------------------------
# tcpserver and xinetd
# --------------------------------------------------------------------------

ENV_SERVER = """\
import os, sys
print("server stderr goes to the log", file=sys.stderr, flush=True)
line = sys.stdin.readline().strip()
keys = ["TCPREMOTEIP", "TCPLOCALPORT", "RELAYCLIENT", "FOO", "REMOTE_HOST", "TCPREMOTEHOST"]
out = " ".join(f"{k}={os.environ.get(k, '-')}" for k in keys)
print(f"got={line} pid={os.getpid()} {out}", flush=True)
if line == "hang":
    import time; time.sleep(60)
"""


@pytest.mark.components
def test_tcpserver_env_rules_and_stop(tmp_path: Path) -> None:
    script = write_script(tmp_path, "server.py", ENV_SERVER)
    rules = '127.0.0.1:allow,RELAYCLIENT=""\n127.0.0.3:deny\n:allow\n'
    with c.tcpserver([c.PYTHON, str(script)], env={"FOO": "bar"}, rules=rules) as srv:
        assert srv.host == "127.0.0.1" and srv.port > 0
        reply = c.tcp_exchange(srv.port, b"hello\n").decode()
        assert "got=hello" in reply and "RELAYCLIENT= " in reply and "FOO=bar" in reply
        assert f"TCPLOCALPORT={srv.port}" in reply and "TCPREMOTEHOST=-" in reply
        with socket.create_connection((srv.host, srv.port), source_address=("127.0.0.2", 0)) as s:
            s.sendall(b"x\n")
            assert "RELAYCLIENT=-" in c.recv_until(s, None).decode()
        with socket.create_connection((srv.host, srv.port), source_address=("127.0.0.3", 0)) as s:
            assert c.recv_until(s, None) == b""  # deny: closed without output
        hanging = socket.create_connection((srv.host, srv.port))
        hanging.sendall(b"hang\n")
        child = read_pid(hanging)
        pgid = srv.pid
        assert "server stderr goes to the log" in srv.log_path.read_text()
    hanging.close()
    assert gone(pgid) and gone(child)


@pytest.mark.components
def test_xinetd_as_nobody_fd2_is_socket_and_children_stopped() -> None:
    base = c.private_dir("xinetd-test-")
    try:
        script = write_script(base, "server.py", ENV_SERVER)
        with c.xinetd(c.SYSTEM_PYTHON, [str(script)], env={"FOO": "bar"}, user="nobody") as srv:
            reply = c.tcp_exchange(srv.port, b"hi\n").decode()
            assert reply.startswith("server stderr goes to the log")  # fd 2 is the socket
            assert "got=hi" in reply and "FOO=bar" in reply and "REMOTE_HOST=127.0.0.1" in reply
            assert "TCPREMOTEIP=-" in reply
            hanging = socket.create_connection((srv.host, srv.port))
            hanging.sendall(b"hang\n")
            child = read_pid(hanging)
        hanging.close()
        assert gone(child) and gone(srv.pid)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_xinetd_rejects_unreachable_server_for_nobody(tmp_path: Path) -> None:
    script = write_script(tmp_path, "s.py", "")
    tmp_path.chmod(0o700)
    with pytest.raises(ValueError, match="not searchable"):
        with c.xinetd(str(script), user="nobody"):
            pass


# --------------------------------------------------------------------------
# smtp-sink
# --------------------------------------------------------------------------


@pytest.mark.components
def test_smtp_sink_dumps_messages() -> None:
    with c.smtp_sink() as sink:
        with smtplib.SMTP(sink.host, sink.port, local_hostname="client.test") as smtp:
            smtp.sendmail("s@example.com", ["r1@example.org", "r2@example.org"],
                          MESSAGE.replace(b"\n", b"\r\n"))
        [msg] = sink.messages()
    assert msg.sender == "s@example.com"
    assert msg.recipients == ["r1@example.org", "r2@example.org"]
    assert msg.helo == "client.test" and msg.client_addr == "127.0.0.1"
    assert msg.received.startswith(b"Received: from client.test")
    assert msg.data == MESSAGE  # LF line endings, dot-stuffing undone


def test_parse_sink_dump_null_sender() -> None:
    raw = (b"X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: h\n"
           b"X-Mail-Args: <> SIZE=10\nX-Rcpt-Args: <a@b>\nReceived: from h\n\tby x;\n\tdate\n"
           b"Subject: s\n\nbody\n\n")
    msg = c.parse_sink_dump(raw)
    assert msg.sender == "" and msg.recipients == ["a@b"] and msg.data == b"Subject: s\n\nbody\n"


# --------------------------------------------------------------------------
# Postfix
# --------------------------------------------------------------------------


@pytest.mark.components
def test_postfix_qmqp_hold_read_back() -> None:
    with c.postfix_qmqp() as pf:
        reply = pf.qmqp_send(MESSAGE, "s@example.com", ["r1@example.org", "r2@example.org"])
        assert reply.startswith(b"K")
        qid = c.queue_id_from_response(reply)
        null_qid = c.queue_id_from_response(pf.qmqp_send(MESSAGE, "", ["r3@example.org"]))
        assert pf.held_ids() == sorted([qid, null_qid])
        msg = pf.read(qid)
        assert msg.sender == "s@example.com"
        assert msg.recipients == ["r1@example.org", "r2@example.org"]
        assert msg.content.startswith(b"Received: from localhost")
        assert c.strip_first_header(msg.content) == MESSAGE
        assert pf.read(null_qid).sender == ""
        assert pf.qmqp_send(MESSAGE, "s@example.com", []).startswith(b"D")
        pf.clear_queue()
        assert pf.queue() == []


@pytest.mark.components
def test_postfix_qmqp_file_mode_delivers() -> None:
    with c.postfix_qmqp(mode="file") as pf:
        assert pf.qmqp_send(MESSAGE, "s@example.com", ["r1@example.org"]).startswith(b"K")
        [path] = pf.delivered(1)
        data = path.read_bytes()
    assert data.startswith(b"Return-Path: <s@example.com>\n")
    assert data.endswith(MESSAGE)


def _rec(rtype: bytes, data: bytes = b"") -> bytes:
    """One Postfix record: type, base-128 little-endian length, data."""
    n, length = len(data), bytearray()
    while n >= 0x80:
        length.append(n & 0x7F | 0x80)
        n >>= 7
    length.append(n)
    return rtype + bytes(length) + data


def _read_attrs(sock: socket.socket) -> dict[str, str]:
    """Read name\0value\0 ... \0 (attr_print0 format; values may be empty)."""
    def field() -> str:
        buf = b""
        while not buf.endswith(b"\0"):
            chunk = sock.recv(1)
            if not chunk:
                raise EOFError(buf)
            buf += chunk
        return buf[:-1].decode()

    attrs = {}
    while name := field():
        attrs[name] = field()
    return attrs


def cleanup_send(path: Path, message: bytes, sender: str, recipients: list[str],
                 flags: int = 0) -> tuple[str, dict[str, str]]:
    """Minimal cleanup(8) client, as qpsmtpd's Qpsmtpd::Postfix does it."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        qid = _read_attrs(sock)["queue_id"]
        sock.sendall(b"flags\0%d\0\0" % flags)
        records = [_rec(b"T", b"%d" % time.time()), _rec(b"S", sender.encode())]
        records += [_rec(b"R", r.encode()) for r in recipients] + [_rec(b"M")]
        records += [_rec(b"N", line) for line in message.rstrip(b"\n").split(b"\n")]
        sock.sendall(b"".join(records) + _rec(b"X") + _rec(b"E"))
        return qid, _read_attrs(sock)


@pytest.mark.components
def test_postfix_private_smtpd_cleanup_and_qmqp() -> None:
    received = b"Received: from client.test (127.0.0.1) by test; Mon, 1 Jan 2024 00:00:00 +0000\n"
    with c.postfix_private() as pf:
        assert pf.qmqp_port and pf.smtpd_port and pf.cleanup_socket.is_socket()
        assert pf.cleanup_socket.parent.stat().st_mode & 0o777 == 0o711
        with smtplib.SMTP(pf.host, pf.smtpd_port) as smtp:
            smtp.sendmail("s@example.com", ["r1@example.org"], MESSAGE.replace(b"\n", b"\r\n"))
        qid, status = cleanup_send(pf.cleanup_socket, received + MESSAGE, "s@example.com", ["r2@example.org"])
        assert status == {"status": "0", "reason": ""}
        qmqp_qid = c.queue_id_from_response(pf.qmqp_send(MESSAGE, "s@example.com", ["r3@example.org"]))
        queue = {m["queue_id"]: m for m in pf.queue()}
        assert queue[qid]["queue_name"] == "incoming"  # flags=0: no header_checks, and no qmgr
        assert queue[qmqp_qid]["queue_name"] == "hold"
        [smtp_qid] = [q for q, m in queue.items() if m["recipients"] == [{"address": "r1@example.org"}]]
        assert queue[smtp_qid]["queue_name"] == "hold"
        via_cleanup = pf.read(qid)
        assert via_cleanup.content == received + MESSAGE and via_cleanup.recipients == ["r2@example.org"]
        via_smtpd = pf.read(smtp_qid)
        assert c.strip_first_header(via_smtpd.content) == MESSAGE
        no_received = cleanup_send(pf.cleanup_socket, MESSAGE, "s@example.com", ["r@example.org"])[1]
        assert no_received["status"] != "0"  # cleanup rejects mail without a Received: header


@pytest.mark.components
def test_postfix_private_file_mode_one_file_per_recipient() -> None:
    with c.postfix_private(mode="file", qmqp=False) as pf:
        assert pf.qmqp_port is None
        with smtplib.SMTP(pf.host, pf.smtpd_port) as smtp:
            smtp.sendmail("s@example.com", ["r1@example.org", "r2@example.org"],
                          MESSAGE.replace(b"\n", b"\r\n"))
        files = pf.delivered(2)
        delivered_to = sorted(f.read_bytes().split(b"Delivered-To: ")[1].split(b"\n")[0] for f in files)
    assert delivered_to == [b"r1@example.org", b"r2@example.org"]


# --------------------------------------------------------------------------
# dnsmasq, redis, spamd, clamd, openssl
# --------------------------------------------------------------------------


@pytest.mark.components
def test_dnsmasq_private_records() -> None:
    lines = ["host-record=mail.example.test,192.0.2.25", "mx-host=example.test,mail.example.test,10",
             "address=/2.0.0.127.bl.test/127.0.0.2"]
    with c.dnsmasq(lines) as dns:
        assert c.dns_rcode(dns.port, "mail.example.test") == (0, 1)
        assert c.dns_rcode(dns.port, "example.test", "MX") == (0, 1)
        assert c.dns_rcode(dns.port, "2.0.0.127.bl.test", tcp=True) == (0, 1)
        assert c.dns_rcode(dns.port, "www.google.com")[0] == 3  # NXDOMAIN, never forwarded


@pytest.mark.components
def test_redis_server() -> None:
    with c.redis_server() as redis:
        assert c.redis_ping(redis.port)
        reply = c.tcp_exchange(redis.port, b"SET k v\r\nGET k\r\n", until=b"v\r\n")
        assert reply == b"+OK\r\n$1\r\nv\r\n"


@pytest.mark.components
def test_spamd_gtube() -> None:
    message = f"Subject: spam\n\n{c.GTUBE}\n".encode()
    request = b"SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(message) + message
    with c.spamd() as spamd:
        reply = c.tcp_exchange(spamd.port, request, shutdown=True)
    assert reply.startswith(b"SPAMD/1.1 0 EX_OK") and b"Spam: True" in reply and b"GTUBE" in reply


@pytest.mark.components
def test_clamd_custom_signatures() -> None:
    with c.clamd() as clamd:
        assert c.clamd_instream(clamd.port, b"hello world\n") == "stream: OK"
        found = c.clamd_instream(clamd.port, b"prefix " + c.EICAR.encode())
        assert found == "stream: Test.EICAR-NDB.UNOFFICIAL FOUND"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(clamd.socket_path))
            sock.sendall(b"zPING\0")
            assert c.recv_until(sock, b"\0") == b"PONG\0"


@pytest.mark.components
def test_make_cert_verifies_for_127_0_0_1(tmp_path: Path) -> None:
    cert, key = c.make_cert(tmp_path)
    assert key.stat().st_mode & 0o777 == 0o600
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve)
        thread.start()
        client_ctx = ssl.create_default_context(cafile=str(cert))
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.recv(2) == b"ok"
        thread.join(5)


# --------------------------------------------------------------------------
# qmail-queue test double
# --------------------------------------------------------------------------


def run_double(message: bytes, envelope: bytes, directory: Path | None, **env: str) -> int:
    """Run the double like qmail-queue's callers do; return its exit status."""
    full_env = {**os.environ, **env}
    if directory is not None:
        full_env["QQ_DOUBLE_DIR"] = str(directory)
    env_read, env_write = os.pipe()
    proc = subprocess.Popen([str(c.QMAIL_QUEUE_DOUBLE)], stdin=subprocess.PIPE, stdout=env_read,
                            env=full_env)
    os.close(env_read)
    try:
        proc.stdin.write(message)
        proc.stdin.close()
        os.write(env_write, envelope)
    except BrokenPipeError:
        pass
    finally:
        os.close(env_write)
    return proc.wait(10)


GOOD_ENVELOPE = b"Fs@example.com\0Tr1@example.org\0Tr2@example.org\0\0"


def test_qq_double_stores_exact_bytes(tmp_path: Path) -> None:
    message = MESSAGE.replace(b"\n", b"\r\n") + b"\x00\xff no final newline"
    assert run_double(message, GOOD_ENVELOPE, tmp_path) == 0
    assert run_double(b"second", b"F\0Tx@y\0\0", tmp_path) == 0
    first, second = c.qq_double_messages(tmp_path)
    assert (first.n, first.message, first.sender) == (1, message, "s@example.com")
    assert first.recipients == ["r1@example.org", "r2@example.org"]
    assert (second.n, second.sender, second.recipients) == (2, "", ["x@y"])
    assert json.loads((tmp_path / "1.env").read_text())["sender"] == "s@example.com"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.env", "1.msg", "2.env", "2.msg"]


@pytest.mark.parametrize("envelope, code", [
    (b"Fs@example.com\0Tr@example.org\0", 54),  # missing final \0 (EOF)
    (b"", 54),                                  # no envelope at all
    (b"Xs@example.com\0Tr@example.org\0\0", 91),  # does not start with F
    (b"Fs@example.com\0Rr@example.org\0\0", 91),  # recipient not introduced by T
    (b"F" + b"a" * 1003 + b"\0\0", 11),         # address too long
])
def test_qq_double_protocol_errors(tmp_path: Path, envelope: bytes, code: int) -> None:
    assert run_double(MESSAGE, envelope, tmp_path) == code
    assert list(tmp_path.iterdir()) == []


def test_qq_double_longest_address_accepted(tmp_path: Path) -> None:
    longest = "a" * 1002  # qmail-queue.c: ADDR 1003 bytes including the \0
    assert run_double(MESSAGE, f"F{longest}\0T{longest}\0\0".encode(), tmp_path) == 0
    assert c.qq_double_messages(tmp_path)[0].recipients == [longest]


def test_qq_double_no_recipients_accepted_like_qmail(tmp_path: Path) -> None:
    assert run_double(MESSAGE, b"Fs@example.com\0\0", tmp_path) == 0
    [stored] = c.qq_double_messages(tmp_path)
    assert stored.recipients == []


def test_qq_double_exit_control(tmp_path: Path) -> None:
    log = tmp_path.parent / "qq.log"
    assert run_double(MESSAGE, GOOD_ENVELOPE, tmp_path, QQ_DOUBLE_EXIT="71", QQ_DOUBLE_LOG=str(log)) == 71
    assert list(tmp_path.iterdir()) == []
    assert json.loads(log.read_text())["outcome"] == "exit"
    # a protocol error still wins over the control
    assert run_double(MESSAGE, b"Fs@example.com\0", tmp_path, QQ_DOUBLE_EXIT="71") == 54


@pytest.mark.parametrize("name", ["KILL", "SIGTERM", "SEGV"])
def test_qq_double_signal_control(tmp_path: Path, name: str) -> None:
    sig = signal.Signals["SIG" + name.removeprefix("SIG")]
    assert run_double(MESSAGE, GOOD_ENVELOPE, tmp_path, QQ_DOUBLE_SIGNAL=name) == -sig
    assert list(tmp_path.iterdir()) == []


def test_qq_double_sleep_control(tmp_path: Path) -> None:
    start = time.monotonic()
    assert run_double(MESSAGE, GOOD_ENVELOPE, tmp_path, QQ_DOUBLE_SLEEP="0.3") == 0
    assert time.monotonic() - start >= 0.3
    assert len(c.qq_double_messages(tmp_path)) == 1


def test_qq_double_reads_message_before_envelope(tmp_path: Path) -> None:
    env_read, env_write = os.pipe()
    proc = subprocess.Popen([str(c.QMAIL_QUEUE_DOUBLE)], stdin=subprocess.PIPE, stdout=env_read,
                            env={**os.environ, "QQ_DOUBLE_DIR": str(tmp_path)})
    os.close(env_read)
    os.write(env_write, GOOD_ENVELOPE)
    os.close(env_write)
    proc.stdin.write(b"partial")
    proc.stdin.flush()
    time.sleep(0.3)
    assert proc.poll() is None  # still waiting for the end of the message
    proc.stdin.write(b" message\n")
    proc.stdin.close()
    assert proc.wait(10) == 0
    assert c.qq_double_messages(tmp_path)[0].message == b"partial message\n"


def test_qq_double_concurrent_stores(tmp_path: Path) -> None:
    threads = [threading.Thread(target=run_double, args=(b"msg %d" % i, GOOD_ENVELOPE, tmp_path))
               for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = c.qq_double_messages(tmp_path)
    assert [m.n for m in stored] == [1, 2, 3, 4, 5, 6]
    assert sorted(m.message for m in stored) == sorted(b"msg %d" % i for i in range(6))


@pytest.mark.components
def test_port_clash_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    real_free_port = c.free_port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: bind fails, connect is refused
        busy = taken.getsockname()[1]
        ports = iter([busy])
        monkeypatch.setattr(c, "free_port", lambda *a, **k: next(ports, None) or real_free_port(*a, **k))
        with c.redis_server() as redis:
            assert redis.port != busy
            assert c.redis_ping(redis.port)
