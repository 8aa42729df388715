"""virus/clamav: Debian's real clamdscan talking to a real private clamd, and clamscan.

The hanging scanner is a shell script written here (no real scanner hangs on demand).
"""

import pytest

import components
from scanner_support import HAM, message, scan_session

pytestmark = pytest.mark.components

EICAR_NAME = "Test.EICAR-NDB.UNOFFICIAL"


@pytest.fixture(scope="module")
def clamd():
    with components.clamd() as daemon:
        yield daemon


def clamav(daemon, *args: str) -> str:
    return " ".join(["virus/clamav", "clamscan_path=/usr/bin/clamdscan", f"clamd_conf={daemon.conf_path}", *args])


def test_virus_is_refused_by_default(clamd):
    outcome = scan_session([clamav(clamd)], message(components.EICAR))
    assert outcome.final == f"552 Virus Found: {EICAR_NAME}"
    assert outcome.queued == []
    assert any("fail, virus found" in line and "(127.0.0.1)" in line for line in outcome.lines_of("virus::clamav"))


def test_clean_mail_gets_x_virus_checked(clamd):
    outcome = scan_session([clamav(clamd)], message(HAM))
    assert outcome.final.startswith("250 ")
    assert "\nX-Virus-Checked: Checked by ClamAV on mx.example.test\n" in outcome.header() + "\n"


def test_action_add_header(clamd):
    outcome = scan_session([clamav(clamd, "action=add-header")], message(components.EICAR))
    assert outcome.final.startswith("250 ")
    assert outcome.header().endswith(f"X-Virus-Found: Yes\nX-Virus-Details: {EICAR_NAME}")


def test_leading_path_form(clamd):
    outcome = scan_session([f"virus/clamav /usr/bin/clamdscan clamd_conf={clamd.conf_path} max_size=100000"],
                           message(components.EICAR))
    assert outcome.final == f"552 Virus Found: {EICAR_NAME}"


def test_max_size(clamd):
    outcome = scan_session([clamav(clamd, "max_size=100")], message(components.EICAR))
    assert outcome.final.startswith("250 ") and "X-Virus" not in outcome.header()
    assert any("Mail too large to scan" in line for line in outcome.lines_of("virus::clamav"))


def test_scanner_failure_defers_or_accepts(tmp_path):
    """clamdscan with a config naming a socket nobody listens on: exit 2."""
    conf = tmp_path / "clamd.conf"
    conf.write_text(f"LocalSocket {tmp_path}/nothing.sock\n")
    plugin = f"virus/clamav clamscan_path=/usr/bin/clamdscan clamd_conf={conf}"
    deferred = scan_session([plugin], message(HAM))
    assert deferred.final == "451 Unable to scan for viruses" and deferred.queued == []
    assert any("exited with 2" in line for line in deferred.lines_of("virus::clamav"))
    accepted = scan_session([plugin + " declined_on_fail"], message(HAM))
    assert accepted.final.startswith("250 ") and "X-Virus" not in accepted.header()


def test_clamscan_without_a_database_fails_safely():
    outcome = scan_session(["virus/clamav clamscan_path=/usr/bin/clamscan"], message(HAM))
    assert outcome.final == "451 Unable to scan for viruses"


def test_missing_scanner(tmp_path):
    outcome = scan_session([f"virus/clamav clamscan_path={tmp_path}/clamdscan"], message(HAM))
    assert outcome.final == "451 Unable to scan for viruses"
    assert any("could not be started" in line for line in outcome.lines_of("virus::clamav"))


def test_hanging_scanner_is_killed_within_the_limit(tmp_path):
    script = tmp_path / "clamdscan"
    script.write_text("#!/bin/sh\nexec sleep 60\n")
    script.chmod(0o755)
    outcome = scan_session([f"virus/clamav clamscan_path={script} timeout=1"], message(HAM))
    assert outcome.final == "451 Unable to scan for viruses"
    assert 0.9 < outcome.seconds < 3
    assert any("did not finish within 1s" in line for line in outcome.lines_of("virus::clamav"))


def test_spool_file_stays_private(clamd, tmp_path):
    """clamdscan --stream reads the file itself: the spool file is never opened up for clamd."""
    spy = tmp_path / "clamdscan"
    spy.write_text(f"#!/bin/sh\nfor last; do :; done\nstat -c %a \"$last\" > {tmp_path}/mode\n"
                   f"exec /usr/bin/clamdscan \"$@\"\n")
    spy.chmod(0o755)
    outcome = scan_session([f"virus/clamav clamscan_path={spy} clamd_conf={clamd.conf_path}"], message(HAM))
    assert outcome.final.startswith("250 ")
    assert (tmp_path / "mode").read_text().strip() == "600"
