"""virus/clamdscan against Debian's real clamd (a private signature database: EICAR, clam.exe).

The failure cases use the real clamd frozen and killed, a clamd with a
small StreamMaxLength, a missing socket, and peers written here where clamd
cannot misbehave on demand (silence, garbage, an answer cut short).
"""

import base64
import subprocess

import pytest

import components
from scanner_support import HAM, message, run_while_killing, scan_session, scripted_peer, silent_listener

pytestmark = pytest.mark.components

EICAR_NAME = "Test.EICAR-NDB.UNOFFICIAL"


@pytest.fixture(scope="module")
def clamd():
    with components.clamd() as daemon:
        yield daemon


def clam(daemon, *args: str) -> str:
    return " ".join(["virus/clamdscan", "clamd_socket", str(daemon.socket_path), *args])


def attachment(name: str, data: bytes, content_type: str = "application/zip") -> list[str]:
    encoded = base64.encodebytes(data).decode().splitlines()
    return message(["--BOUNDARY", "Content-Type: text/plain", "", "see the attachment", "--BOUNDARY",
                    f'Content-Type: {content_type}; name="{name}"', "Content-Transfer-Encoding: base64",
                    f'Content-Disposition: attachment; filename="{name}"', "", *encoded, "--BOUNDARY--"],
                   extra=["MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="BOUNDARY"'])


def eicar_zip(tmp_path) -> bytes:
    (tmp_path / "eicar.com").write_text(components.EICAR)
    subprocess.run([components.find_binary("zip"), "-q", "-j", str(tmp_path / "eicar.zip"),
                    str(tmp_path / "eicar.com")], check=True)
    return (tmp_path / "eicar.zip").read_bytes()


def test_eicar_is_refused(clamd):
    outcome = scan_session([clam(clamd)], message(components.EICAR))
    assert outcome.final == f"552 Virus found: {EICAR_NAME}"
    assert outcome.queued == []
    line = [line for line in outcome.lines_of("virus::clamdscan") if "fail, found virus" in line][0]
    assert EICAR_NAME in line and "(127.0.0.1)" in line


def test_eicar_inside_a_zip_attachment_is_refused(clamd, tmp_path):
    outcome = scan_session([clam(clamd)], attachment("invoice.zip", eicar_zip(tmp_path)))
    assert outcome.final == f"552 Virus found: {EICAR_NAME}"


def test_clamav_testfile_inside_clam_zip_is_refused(clamd):
    data = components.CLAMAV_TESTFILE.with_name("clam.zip").read_bytes()
    outcome = scan_session([clam(clamd)], attachment("clam.zip", data))
    assert outcome.final == "552 Virus found: Test.ClamAV-TestFile-HDB.UNOFFICIAL"


def test_clean_mail_passes_with_headers(clamd):
    outcome = scan_session([clam(clamd)], message(HAM))
    assert outcome.final.startswith("250 ")
    assert outcome.header().startswith("X-Virus-Checked: by ClamAV 1.")
    assert " on mx.example.test\nX-Virus-Found: No\n" in outcome.header()
    assert outcome.notes["karma"] is None and outcome.notes["naughty"] is None


def test_clean_zip_passes(clamd, tmp_path):
    (tmp_path / "notes.txt").write_text("nothing to see\n")
    subprocess.run([components.find_binary("zip"), "-q", "-j", str(tmp_path / "n.zip"), str(tmp_path / "notes.txt")],
                   check=True)
    assert scan_session([clam(clamd)], attachment("n.zip", (tmp_path / "n.zip").read_bytes())).final.startswith("250 ")


def test_tcp(clamd):
    plugin = f"virus/clamdscan clamd_host 127.0.0.1 clamd_port {clamd.port}"
    assert scan_session([plugin], message(components.EICAR)).final == f"552 Virus found: {EICAR_NAME}"
    assert "X-Virus-Found: No" in scan_session([plugin], message(HAM)).header()


def test_deny_viruses_no_marks_the_message(clamd):
    outcome = scan_session([clam(clamd, "deny_viruses no")], message(components.EICAR))
    assert outcome.final.startswith("250 ")
    assert outcome.header().startswith(f"X-Virus-Details: {EICAR_NAME}\nX-Virus-Found: Yes\n")
    assert outcome.notes["karma"] == -1 and outcome.notes["naughty"] == f"Virus found: {EICAR_NAME}"


def test_max_size(clamd):
    filler = ["a line of filler text to make the message bigger than one kilobyte"] * 40
    outcome = scan_session([clam(clamd, "max_size 1")], message([components.EICAR, *filler]))
    assert outcome.final.startswith("250 ")
    assert "X-Virus" not in outcome.header()
    assert any("skip, too big" in line for line in outcome.lines_of("virus::clamdscan"))
    assert scan_session([clam(clamd, "max_size 10")], message([components.EICAR, *filler])).final.startswith("552 ")


def test_scan_all_no_scans_only_multipart(clamd, tmp_path):
    plain = scan_session([clam(clamd, "scan_all no")], message(components.EICAR))
    assert plain.final.startswith("250 ") and "X-Virus" not in plain.header()
    assert any("skip, not multipart" in line for line in plain.lines_of("virus::clamdscan"))
    multipart = scan_session([clam(clamd, "scan_all no")], attachment("x.zip", eicar_zip(tmp_path)))
    assert multipart.final == f"552 Virus found: {EICAR_NAME}"


def test_naughty_connection_is_left_to_the_naughty_plugin(clamd):
    marker = "def hook_connect(self, transaction):\n    self.connection.notes['naughty'] = 'listed'\n"
    outcome = scan_session(["mark_naughty", clam(clamd), "naughty reject data_post reject_type perm"], message(HAM),
                           extra_plugins={"mark_naughty": marker})
    assert outcome.final == "552 listed"
    assert any("skip, naughty" in line for line in outcome.lines_of("virus::clamdscan"))


def test_naughty_connection_is_scanned_without_the_naughty_plugin(clamd):
    """A virus marks the connection naughty; with nobody acting on that, the next message is still scanned."""
    marker = "def hook_connect(self, transaction):\n    self.connection.notes['naughty'] = 1\n"
    outcome = scan_session(["mark_naughty", clam(clamd)], message(components.EICAR),
                           extra_plugins={"mark_naughty": marker})
    assert outcome.final == f"552 Virus found: {EICAR_NAME}"


def test_relay_clients_are_scanned(clamd):
    outcome = scan_session(["relay", clam(clamd)], message(components.EICAR), config={"relayclients": ["127.0.0.1"]})
    assert outcome.final == f"552 Virus found: {EICAR_NAME}"


# -- clamd failing ------------------------------------------------------------------

def test_clamd_down_accepts_unscanned(tmp_path):
    outcome = scan_session([f"virus/clamdscan clamd_socket {tmp_path}/clamd.sock"], message(components.EICAR))
    assert outcome.final.startswith("250 ") and len(outcome.queued) == 1
    assert "X-Virus" not in outcome.header()
    line = [line for line in outcome.lines_of("virus::clamdscan") if "error" in line][0]
    assert "No such file or directory" in line and "accepted unscanned (127.0.0.1)" in line


def test_clamd_refusing_with_defer_on_error():
    with silent_listener() as address:
        port = int(address.rsplit(":", 1)[1])
    outcome = scan_session([f"virus/clamdscan clamd_host 127.0.0.1 clamd_port {port} defer_on_error yes"],
                           message(HAM))
    assert outcome.final == "451 Unable to scan for viruses"
    assert outcome.queued == []
    assert any("Connection refused" in line for line in outcome.lines_of("virus::clamdscan"))


def test_silent_clamd_times_out_within_the_limit():
    with silent_listener() as address:
        port = address.rsplit(":", 1)[1]
        outcome = scan_session([f"virus/clamdscan clamd_host 127.0.0.1 clamd_port {port} timeout 1 defer_on_error yes"],
                               message(HAM))
    assert outcome.final == "451 Unable to scan for viruses"
    assert 0.9 < outcome.seconds < 3


def test_silent_clamd_is_cut_before_the_plugin_timeout():
    with silent_listener() as address:
        port = address.rsplit(":", 1)[1]
        outcome = scan_session([f"virus/clamdscan clamd_host 127.0.0.1 clamd_port {port} defer_on_error yes"],
                               message(HAM), config={"plugin_timeout": ["2"]})
    assert outcome.final == "451 Unable to scan for viruses"
    assert outcome.seconds < 3


def test_stream_longer_than_streammaxlength_is_an_error():
    with components.clamd(stream_max_length="100K") as small:
        filler = ["x" * 70] * 3000  # about 210 KB
        outcome = scan_session([clam(small, "max_size 1024 defer_on_error yes")], message(filler))
        accepted = scan_session([clam(small, "max_size 1024")], message(filler))
    assert outcome.final == "451 Unable to scan for viruses"
    assert any("size limit exceeded" in line for line in outcome.lines_of("virus::clamdscan"))
    assert accepted.final.startswith("250 ") and "X-Virus" not in accepted.header()


@pytest.mark.parametrize("answer, reason", [
    (b"stream: something odd\0", "garbage from"),
    (b"HTTP/1.0 400 Bad Request\r\n\r\n", "mid-answer: 'HTTP/1.0 400"),
    (b"stream: Eicar-Sig", "mid-answer"),
    (b"", "without an answer"),
    (b"stream: lstat() failed. ERROR\0", "failed: stream: lstat() failed. ERROR"),
])
def test_broken_answers_are_an_error(answer, reason):
    """A peer that answers VERSION as clamd does, and INSTREAM with `answer`."""
    def respond(request: bytes) -> bytes:
        return b"ClamAV 1.4.6/27000/Mon Jan  6 09:12:00 2025\0" if request.startswith(b"zVERSION") else answer

    def complete(received: bytes) -> bool:
        return received == b"zVERSION\0" or received.endswith(b"\0\0\0\0")

    with scripted_peer(respond, until=complete) as address:
        port = address.rsplit(":", 1)[1]
        outcome = scan_session([f"virus/clamdscan clamd_host 127.0.0.1 clamd_port {port} defer_on_error yes"],
                               message(HAM))
        accepted = scan_session([f"virus/clamdscan clamd_host 127.0.0.1 clamd_port {port}"], message(HAM))
    assert outcome.final == "451 Unable to scan for viruses" and outcome.queued == []
    assert any(reason in line for line in outcome.lines_of("virus::clamdscan")), outcome.lines_of("virus::clamdscan")
    assert accepted.final.startswith("250 ") and "X-Virus" not in accepted.header()


def test_clamd_killed_mid_scan():
    with components.clamd() as victim:
        outcome = run_while_killing(victim, lambda: scan_session(
            [clam(victim, "defer_on_error yes")], message(HAM)))
    assert outcome.final == "451 Unable to scan for viruses"
    assert outcome.queued == []
    assert outcome.seconds < 5


def test_slow_clamd_is_given_up_at_the_timeout():
    """A peer that answers one byte every 0.2 s (no real clamd can be made that slow)."""
    def respond(request: bytes) -> bytes:
        return b"ClamAV 1.4.6\0" if request.startswith(b"zVERSION") else b"stream: OK\0"

    def complete(received: bytes) -> bool:
        return received == b"zVERSION\0" or received.endswith(b"\0\0\0\0")

    with scripted_peer(respond, until=complete, trickle=0.2) as address:
        port = address.rsplit(":", 1)[1]
        outcome = scan_session([f"virus/clamdscan clamd_host 127.0.0.1 clamd_port {port} timeout 2 defer_on_error yes"],
                               message(HAM))
    assert outcome.final == "451 Unable to scan for viruses"
    assert outcome.seconds < 3.5
