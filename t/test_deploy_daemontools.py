"""deploy/daemontools/run and log/run under a real svscan/supervise: tcpserver with
softlimit, -u/-g nobody, the tcprules example compiled to cdb, and multilog."""

from __future__ import annotations

import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from components import (QMAIL_QUEUE_DOUBLE, SYSTEM_PYTHON, chown_nobody, find_binary, free_port,
                        qq_double_messages)
from deploy_support import REPO, private_install, remove_install

# needs real daemons, Debian packages, root or optional libraries: -m 'not components' leaves it out
pytestmark = pytest.mark.components

DEPLOY = REPO / "deploy"


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the service did not start listening"
            time.sleep(0.05)


def test_run_scripts_under_svscan():
    top = Path(tempfile.mkdtemp(prefix="svscan-"))
    top.chmod(0o755)
    service = top / "service" / "qpsmtpd"
    (service / "log" / "main").mkdir(parents=True)
    shutil.copy(DEPLOY / "daemontools" / "run", service / "run")
    shutil.copy(DEPLOY / "daemontools" / "log" / "run", service / "log" / "run")
    chown_nobody(service / "log" / "main")
    rules = (DEPLOY / "tcp.smtp.rules").read_text()
    subprocess.run([find_binary("tcprules"), str(top / "tcp.smtp.cdb"), str(top / "tcp.smtp.tmp")],
                   input=rules.encode(), check=True)
    queue_dir = top / "queue"
    queue_dir.mkdir()
    chown_nobody(queue_dir)
    install = private_install({"plugins": ["relay", "rcpt_ok", "queue/qmail-queue"], "rcpthosts": ["example.test"],
                               "logging": ["logging/warn LOGINFO"]}, owner="nobody")
    port = free_port()
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "QPSMTPD_DIR": str(install), "PYTHON": SYSTEM_PYTHON,
           "SMTPD_USER": "nobody", "IP": "127.0.0.1", "PORT": str(port), "RULES": str(top / "tcp.smtp.cdb"),
           "LOG_USER": "nobody", "QMAILQUEUE": str(QMAIL_QUEUE_DOUBLE), "QQ_DOUBLE_DIR": str(queue_dir)}
    svscan = subprocess.Popen([find_binary("svscan"), str(top / "service")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    svc = find_binary("svc")
    try:
        wait_port(port)
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as smtp:
            smtp.sendmail("alice@sender.test", ["bob@elsewhere.test"], b"Subject: relayed\r\n\r\nhi\r\n")
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10,
                          source_address=("127.0.0.3", 0)) as smtp:
            smtp.ehlo()
            smtp.mail("alice@sender.test")
            assert smtp.rcpt("bob@elsewhere.test")[0] >= 500, "only 127.0.0.1 may relay by the example rules"
        stored = qq_double_messages(queue_dir)
        assert [m.recipients for m in stored] == [["bob@elsewhere.test"]]
        current = service / "log" / "main" / "current"
        deadline = time.monotonic() + 5
        while "dispatching QUIT" not in (current.read_text() if current.exists() else ""):
            assert time.monotonic() < deadline, "no qpsmtpd lines in multilog's current"
            time.sleep(0.05)
        lines = current.read_text().splitlines()
        assert all(line.startswith("@4000") for line in lines), lines[:3]
        assert any("tcpserver: status: " in line for line in lines)
        assert any("dispatching rcpt to:<bob@elsewhere.test>" in line.lower() for line in lines)
        ps = subprocess.run(["ps", "-ww", "-o", "user=,args=", "-C", "tcpserver"], capture_output=True, text=True).stdout
        assert any(line.startswith("nobody") and str(port) in line for line in ps.splitlines()), ps
    finally:
        svscan.terminate()
        svscan.wait(10)
        subprocess.run([svc, "-dx", str(service), str(service / "log")], check=False)
        time.sleep(0.3)
        remove_install(install)
        remove_install(top)
