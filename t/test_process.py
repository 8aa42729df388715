"""The real qpsmtpd.py process on pipes, socket pairs and TCP sockets, with real clients."""

import json
import os
import smtplib
import socket
import subprocess
import sys
import time

import pytest

from sessionfile import QPSMTPD, write_config

TEST_PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins_for_tests")
REPO_PLUGINS = os.path.join(os.path.dirname(QPSMTPD), "plugins")


@pytest.fixture
def setup(tmp_path):
    """A private config dir (env QPSMTPD_CONFIG) with a queue that stores into tmp_path/queue."""
    queue = tmp_path / "queue"
    queue.mkdir()
    config = {
        "me": "mx.example.test",
        "rcpthosts": ["example.test"],
        "plugin_dirs": [TEST_PLUGINS, REPO_PLUGINS],
        "plugins": ["rcpt_ok", f"queue_to_dir {queue}"],
        "spool_dir": str(tmp_path / "spool"),
        "loglevel": "7",
    }

    def make(**overrides):
        write_config(str(tmp_path / "config"), {**config, **overrides}, str(tmp_path))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TCP", "QPSMTPD", "RELAYCLIENT"))}
        env["QPSMTPD_CONFIG"] = str(tmp_path / "config")
        return env, queue

    return make


def queued(queue):
    found = []
    for name in sorted(os.listdir(queue)):
        if name.endswith(".env"):
            envelope = json.loads((queue / name).read_text())
            found.append((envelope, (queue / (name[:-4] + ".msg")).read_bytes()))
    return found


def spawn_on_socket(sock, env, stderr=subprocess.PIPE):
    return subprocess.Popen([sys.executable, QPSMTPD], stdin=sock.fileno(), stdout=sock.fileno(),
                            stderr=stderr, env=env, cwd="/")


@pytest.mark.components
def test_swaks_over_pipe_delivers_a_message(setup):
    env, queue = setup()
    result = subprocess.run(["swaks", "--pipe", f"{sys.executable} {QPSMTPD}", "-f", "sender@b.test",
                             "-t", "rcpt@example.test", "--helo", "client.test", "--body", "hello from swaks"],
                            env=env, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    (envelope, message), = queued(queue)
    assert envelope == {"sender": "sender@b.test", "recipients": ["rcpt@example.test"]}
    assert b"hello from swaks" in message
    assert message.startswith(b"Authentication-Results: mx.example.test; auth=none\nReceived: from [127.0.0.1] (HELO client.test) (127.0.0.1)\n by mx.example.test (qpsmtpd/")
    assert b"\r\n" not in message


@pytest.mark.components
def test_swaks_pipelining_two_recipients(setup):
    env, queue = setup()
    result = subprocess.run(["swaks", "--pipe", f"{sys.executable} {QPSMTPD}", "--pipeline", "-f", "s@b.test",
                             "-t", "one@example.test,two@example.test", "--helo", "client.test"],
                            env=env, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode()
    assert b"PIPELINING" in result.stdout
    (envelope, _message), = queued(queue)
    assert envelope["recipients"] == ["one@example.test", "two@example.test"]


def test_smtplib_over_a_socket_pair_several_messages(setup):
    env, queue = setup()
    server, client = socket.socketpair()
    proc = spawn_on_socket(server, env)
    server.close()
    smtp = smtplib.SMTP()
    smtp.sock = client
    smtp.file = None
    code, banner = smtp.getreply()
    assert code == 220 and b"mx.example.test ESMTP qpsmtpd" in banner
    smtp.ehlo("client.test")
    assert smtp.has_extn("pipelining") and smtp.has_extn("8bitmime")
    for number in range(3):
        smtp.sendmail("a@b.test", [f"r{number}@example.test"], f"Subject: {number}\r\n\r\n.leading dot\r\nbody {number}\r\n")
    smtp.quit()
    assert proc.wait(timeout=10) == 0
    messages = queued(queue)
    assert [env["recipients"] for env, _ in messages] == [["r0@example.test"], ["r1@example.test"], ["r2@example.test"]]
    assert b"\n.leading dot\nbody 2\n" in messages[2][1]


@pytest.mark.parametrize("family,address", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_tcp_socket_without_tcpserver_variables_uses_getpeername(setup, family, address):
    env, _queue = setup()
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((address, 0))
    listener.listen(1)
    client = socket.create_connection((address, listener.getsockname()[1]))
    conn, _ = listener.accept()
    proc = spawn_on_socket(conn, env)
    conn.close()
    reader = client.makefile("rb")
    assert reader.readline().startswith(b"220 ")
    client.sendall(b"HELO client.test\r\nQUIT\r\n")
    assert reader.readline() == f"250 mx.example.test Hi [{address}] [{address}]; I am so happy to meet you.\r\n".encode()
    proc.wait(timeout=10)
    client.close()
    listener.close()


def test_tcpserver_variables_are_used_and_sanitised(setup):
    env, _queue = setup()
    env.update({"TCPREMOTEIP": "192.0.2.7", "TCPREMOTEHOST": "evil\x1b[31m.host;rm -rf", "TCPREMOTEINFO": "id\r\nX",
                "TCPLOCALIP": "192.0.2.25", "TCPLOCALPORT": "25", "TCPREMOTEPORT": "4000"})
    out = subprocess.run([sys.executable, QPSMTPD], input=b"HELO c.test\r\nQUIT\r\n", env=env,
                         capture_output=True, timeout=10).stdout
    assert b"250 mx.example.test Hi idX@evil[31m.hostrm-rf [192.0.2.7]; I am so happy to meet you.\r\n" in out


def test_timeout_gives_421_and_clean_exit(setup):
    env, _queue = setup(timeout="1", plugins=["rcpt_ok", "queue_to_dir /nonexistent"])
    proc = subprocess.Popen([sys.executable, QPSMTPD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    started = time.monotonic()
    proc.stdin.write(b"HELO c.test\r\n")
    proc.stdin.flush()
    out = b""
    while b"421" not in out:
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=10) == 0
    elapsed = time.monotonic() - started
    assert out.endswith(b"421 mx.example.test Timeout; I can't wait that long...\r\n"), out
    assert 0.9 < elapsed < 5
    err = proc.stderr.read().decode()
    assert "post-connection ran" in err and "Traceback" not in err


def test_eof_anywhere_ends_cleanly_and_runs_post_connection(setup):
    env, queue = setup()
    for partial in (b"", b"HELO c", b"HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhalf"):
        result = subprocess.run([sys.executable, QPSMTPD], input=partial, env=env, capture_output=True, timeout=10)
        assert result.returncode == 0
        assert b"Traceback" not in result.stderr and b"post-connection ran" in result.stderr
    assert queued(queue) == []


@pytest.mark.components
def test_long_command_line_is_refused_not_buffered(setup):
    env, _queue = setup(max_line_length="512")
    payload = b"NOOP " + b"x" * 5_000_000 + b"\r\nNOOP\r\nQUIT\r\n"
    result = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, QPSMTPD], input=payload, env=env,
                            capture_output=True, timeout=20)
    lines = result.stdout.split(b"\r\n")
    assert lines[1:4] == [b"500 Line too long", b"250 OK", b"221 mx.example.test closing connection. Have a wonderful day."]
    peak_kib = int(result.stderr.strip().split(b"\n")[-1])
    assert peak_kib < 40_000  # the 5 MB line never sat in memory whole


def test_stderr_on_the_client_socket_never_reaches_the_client(setup):
    """xinetd passes the socket as fd 0, 1 and 2: with loglevel 7 nothing but replies may arrive."""
    env, _queue = setup()
    server, client = socket.socketpair()
    proc = spawn_on_socket(server, env, stderr=server.fileno())
    server.close()
    client.sendall(b"HELO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.test>\r\nFOO\r\nQUIT\r\n")
    data = b""
    while True:
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    proc.wait(timeout=10)
    lines = data.split(b"\r\n")[:-1]
    assert all(line[:3].isdigit() and line[3:4] in (b" ", b"-") for line in lines), data
    assert len(lines) == 6


def test_plugin_that_does_not_exist_gets_421_and_a_log_line(setup):
    env, _queue = setup(plugins=["rcpt_ok", "no_such/plugin x y"])
    result = subprocess.run([sys.executable, QPSMTPD], input=b"HELO c\r\n", env=env, capture_output=True, timeout=10)
    assert result.stdout == b"421 mx.example.test Service temporarily unavailable; try again later\r\n"
    assert b"no_such/plugin" in result.stderr and b"not found" in result.stderr


def test_runs_from_any_working_directory_with_shipped_layout(tmp_path, setup):
    env, _queue = setup()
    result = subprocess.run([sys.executable, QPSMTPD], input=b"QUIT\r\n", env=env, capture_output=True,
                            timeout=10, cwd=str(tmp_path))
    assert result.stdout.startswith(b"220 mx.example.test ESMTP")
