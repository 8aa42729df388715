"""ident/p0f against a real p0f 3 (Debian's p0f 3.09b) capturing on the loopback
interface: the test makes a real TCP connection from 127.0.0.1 so p0f
fingerprints it, then a session from 127.0.0.1 asks p0f's API socket."""

from __future__ import annotations

import json
import os

import pytest
from components_ported import p0f
from qpsmtpd.testing import REPO_DIR, run_session

pytestmark = pytest.mark.components

MESSAGE = ["HELO client.test", "MAIL FROM:<a@example.org>", "RCPT TO:<x@example.test>", "DATA",
           "X-P0F-Genre: forged by the client", "Subject: hi", "", "body", ".", "QUIT"]


@pytest.fixture(scope="module")
def p0fd():
    with p0f() as daemon:
        daemon.fingerprint_localhost()
        yield daemon


# A plugin of the test: writes the connection notes as JSON when the session ends.
NOTES_PROBE = """
import json
def hook_disconnect(self, transaction):
    with open(self.args[0], "w") as handle:
        json.dump({key: value for key, value in self.connection.notes.items()}, handle, default=str)
"""


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("probe")
    (directory / "notes_probe.py").write_text(NOTES_PROBE)
    return directory


def session(plugin_line, lines=MESSAGE, ip="127.0.0.1", probe=None, **config):
    plugins = config.pop("plugins", [plugin_line, "rcpt_ok"])
    dirs = None
    if probe is not None:
        plugins = [*plugins, f"notes_probe {probe / 'notes.json'}"]
        dirs = [str(probe), os.path.join(REPO_DIR, "plugins")]
    result = run_session(lines, config={"plugins": plugins, "rcpthosts": ["example.test"], "loglevel": "7",
                                        **config},
                         connection={"remote_ip": ip}, capture_queue=True, plugin_dirs=dirs)
    result.notes = json.loads((probe / "notes.json").read_text()) if probe is not None else None
    return result


def test_connection_note_log_and_headers(p0fd, probe_dir):
    result = session(f"ident/p0f {p0fd.socket_path}", probe=probe_dir)
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    note = result.notes["p0f"]
    assert note["status"] == 0x10 and note["magic"] == 0x50304602
    assert note["os_name"] == "Linux"
    assert note["genre"] == f"Linux {note['os_flavor']}"
    assert note["total_conn"] >= 1 and note["distance"] == 0
    assert any(line.endswith(f"ident::p0f: Linux {note['os_flavor']}") for line in result.log)
    message = result.queued[0].message.decode()
    assert f"X-P0F-Genre: Linux {note['os_flavor']}\n" in message
    assert "forged by the client" not in message


def test_unknown_host_is_no_match(p0fd, probe_dir):
    result = session(f"ident/p0f {p0fd.socket_path}", ip="192.0.2.77", probe=probe_dir)
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert "p0f" not in result.notes
    assert any("skip, no match" in line for line in result.log)


def test_blocked_operating_system(p0fd):
    for entry in ("/linux/", p0fd_genre(p0fd)):
        result = session(f"ident/p0f {p0fd.socket_path}", p0f_blocked_operating_systems=[entry])
        assert result.replies()[3] == (550, ["OS Blocked"]), entry
    result = session(f"ident/p0f {p0fd.socket_path}", p0f_blocked_operating_systems=["Windows 7 or 8", "/windows/"])
    assert result.replies()[3][0] == 250


def test_relay_clients_are_not_blocked(p0fd, probe_dir):
    result = session(None, plugins=["relay", f"ident/p0f {p0fd.socket_path}", "rcpt_ok"], probe=probe_dir,
                     relayclients=["127.0.0.1"], p0f_blocked_operating_systems=["/linux/"])
    assert result.replies()[3][0] == 250
    assert result.notes["p0f_exclude"] == 1


def test_smite_os_and_headers_off(p0fd, probe_dir):
    result = session(f"ident/p0f {p0fd.socket_path} smite_os ^linux add_headers false", probe=probe_dir)
    assert result.notes["karma"] == -1
    assert "X-P0F-Genre" not in result.queued[0].message.decode().replace("X-P0F-Genre: forged", "")


def test_p0f_not_running_does_not_stop_mail(tmp_path):
    result = session(f"ident/p0f {tmp_path}/missing.sock")
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert any("skip, could not query p0f" in line for line in result.log)


def test_version_2_is_refused_with_a_log_line(p0fd, probe_dir):
    result = session(f"ident/p0f {p0fd.socket_path} version 2", probe=probe_dir)
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert "p0f" not in result.notes
    assert any("only p0f 3" in line for line in result.log)


def p0fd_genre(daemon) -> str:
    message = session(f"ident/p0f {daemon.socket_path}").queued[0].message.decode()
    return message.split("X-P0F-Genre: ", 1)[1].split("\n", 1)[0]


def test_ipv6_client(p0fd, probe_dir):
    p0fd.fingerprint_localhost("::1")
    result = session(f"ident/p0f {p0fd.socket_path}", ip="::1", probe=probe_dir)
    assert result.notes["p0f"]["status"] == 0x10
    # p0f knows the host (the query carried the 16-byte address); its database may not name the OS
    assert result.notes["p0f"]["total_conn"] >= 1
    assert ("genre" in result.notes["p0f"]) == bool(result.notes["p0f"]["os_name"])
