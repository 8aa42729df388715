"""qpsmtpd.py --report on the logs real sessions wrote (t/logsamples.py).

The first tests need only Python (logging/warn and logging/file logs); the
browser test renders the HTML page in Debian's headless Chromium and reads
back what it shows (the DOM after rendering, and the pixels of a screenshot).
"""

from __future__ import annotations

import gzip
import html.parser
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import pytest

import logsamples
from components import find_binary
from logsamples import AUTH_IP, DEFER_IP, GOOD_IP, GOOD_SENDER, IPV6_IP, RELAY_IP, SPAMMER
from qpsmtpd.report import Report, build_report, parse_line, render_html, render_text

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def logdir():
    base = Path(tempfile.mkdtemp(prefix="qpreport-"))
    logsamples.stderr_log(base / "stderr.log")
    logsamples.file_log(base / "file.log")
    yield base
    shutil.rmtree(base, ignore_errors=True)


def qpsmtpd_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "qpsmtpd.py"), "--report", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "TZ": "UTC"})


def test_counts_of_real_sessions(logdir):
    report = build_report([str(logdir / "file.log")])
    totals = report.totals
    assert (totals.connections, totals.accept, totals.reject, totals.defer, totals.fault) == (12, 2, 9, 1, 0)
    assert report.by_plugin["auth::auth_flat_file"].reject == 6
    assert report.by_plugin["rcpt_ok"].reject == 3
    assert report.by_plugin["queue::maildir"].accept == 2
    assert report.by_plugin["random_error"].defer == 1
    assert report.reasons[("reject", "rcpt_ok", "550 Relaying denied (#5.7.1)")] == 3
    # the password guesser's reply names user and address: one reason, not six
    [(auth_reason, count)] = [(r, n) for (v, p, r), n in report.reasons.items() if p == "auth::auth_flat_file"]
    assert count == 6 and "<address>" in auth_reason and "<ip>" in auth_reason and AUTH_IP not in auth_reason
    assert report.by_ip[AUTH_IP].connections == 6 and report.by_ip[AUTH_IP].reject == 6
    assert report.by_ip[RELAY_IP].reject == 2 and report.by_ip[IPV6_IP].reject == 1
    assert report.by_ip[GOOD_IP].accept == 2 and report.by_ip[DEFER_IP].defer == 1
    # logging/file stamps every line: everything falls in the hour(s) the sessions ran
    assert "unknown" not in report.by_hour
    assert sum(t.connections for t in report.by_hour.values()) == 12


def test_stderr_lines_without_time_stamps_count_the_same(logdir):
    """logging/warn's raw lines (pid first, no time) give the same counts, under the hour 'unknown'."""
    report = build_report([str(logdir / "stderr.log")])
    assert (report.totals.connections, report.totals.accept, report.totals.reject) == (12, 2, 9)
    assert list(report.by_hour) == ["unknown"]


def test_senders_need_loginfo(tmp_path):
    """At LOGINFO the MAIL FROM lines name the senders; at LOGNOTICE the report says where to get them."""
    log = tmp_path / "info.log"
    with open(log, "wb") as out:
        logsamples.run_sessions(["logging/warn LOGINFO"], stderr=out, base=tmp_path)
    report = build_report([str(log)])
    assert report.by_sender[GOOD_SENDER].accept == 2
    assert report.by_sender[SPAMMER].reject == 3
    assert report.by_sender[SPAMMER].connections == 3  # for senders: the MAIL FROMs
    text = render_text(report)
    assert f"{GOOD_SENDER}" in text.split("Top 10 senders")[1]
    assert "dispatching MAIL FROM" in render_text(Report())  # no senders: where to find them


def test_line_formats():
    """One decision line as each logger / log reader writes it."""
    body = "(rcpt) rcpt_ok: reject 192.0.2.7: 550 Relaying denied (#5.7.1)"
    lines = {
        "raw": f"4711 {body}",
        "multilog": f"@400000006925ecf11c2a9b0c 4711 {body}",
        "tai64nlocal": f"2025-11-25 17:52:49.472554252 4711 {body}",
        "connection_id": f"1764093169.4711 {body}",
        "transaction_id": f"1764093169.4711.2 {body}",
        "file": f"Tue Nov 25 17:52:49 2025 mx[4711]: 1764093169.4711 {body}",
        "rsyslog": f"2025-11-25T17:52:49.472554+00:00 mx qpsmtpd[4711]: 1764093169.4711 {body}",
        "syslog": f"Nov 25 17:52:49 mx qpsmtpd[4711]: 1764093169.4711 {body}",
        "journal": f"2025-11-25T17:52:49+0000 mx qpsmtpd[4711]: 4711 {body}",
    }
    for kind, line in lines.items():
        parsed = parse_line(line)
        assert parsed is not None, kind
        assert (parsed.hook, parsed.plugin) == ("rcpt", "rcpt_ok"), kind
        assert parsed.message == "reject 192.0.2.7: 550 Relaying denied (#5.7.1)", kind
        assert parsed.session in ("4711", "1764093169.4711"), kind
        if kind != "raw":
            assert parsed.when is not None, kind
    assert parse_line(lines["multilog"]).when == pytest.approx(1764093159.472, abs=0.001)  # TAI = UTC + 10 s
    assert parse_line(lines["rsyslog"]).when == pytest.approx(1764092569.472554)
    assert parse_line(lines["connection_id"]).when == 1764093169
    assert parse_line("some other program's line") is None
    # logging/file with a tsformat the report does not know: the connection id gives the time
    odd = parse_line(f"25/11/2025-17:52 mx[4711]: 1764093169.4711 {body}")
    assert (odd.when, odd.hook, odd.plugin) == (1764093169, "rcpt", "rcpt_ok")
    # a reply quoting client text that looks like "host[pid]: " changes nothing
    quoted = parse_line("4711 (rcpt) rcpt_ok: reject 192.0.2.7: 550 <a b[1]: 2.3.4.5 (auth) x: reject>")
    assert (quoted.session, quoted.plugin) == ("4711", "rcpt_ok")
    assert quoted.message.startswith("reject 192.0.2.7: 550")


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_per_hour_buckets(utc):
    """Lines of three hours (multilog stamps) land in three rows, in order."""
    def tai(seconds: int) -> str:
        return f"@{seconds + 2**62 + 10:016x}00000000"
    start = 1764054000  # 2025-11-25 07:00 UTC
    lines = []
    for hour, (accepted, refused) in enumerate(((1, 0), (3, 2), (0, 5))):
        stamp = tai(start + hour * 3600 + 60)
        for n in range(accepted):
            lines.append(f"{stamp} {100 + n} (queue) queue::maildir: accept 203.0.113.9: 250 Queued!")
        for n in range(refused):
            lines.append(f"{stamp} {200 + n} (rcpt) rcpt_ok: reject 198.51.100.8: 550 Relaying denied (#5.7.1)")
    report = Report()
    report.read_lines(lines)
    assert [(hour, t.accept, t.reject) for hour, t in sorted(report.by_hour.items())] == [
        ("2025-11-25 07:00", 1, 0), ("2025-11-25 08:00", 3, 2), ("2025-11-25 09:00", 0, 5)]


def test_command_line(logdir, tmp_path):
    gz = tmp_path / "old.log.gz"
    gz.write_bytes(gzip.compress((logdir / "file.log").read_bytes()))
    page = tmp_path / "report.html"
    run = qpsmtpd_report("--top", "3", "--html", str(page), str(logdir / "file.log"), str(gz))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[2].split() == ["connections", "24"]  # both files
    assert "Top 3 client addresses" in run.stdout
    assert f"{AUTH_IP}" in run.stdout.split("Top 3 client addresses")[1]
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert qpsmtpd_report().returncode == 2
    missing = qpsmtpd_report(str(tmp_path / "nothing.log"))
    assert missing.returncode == 1 and "nothing.log" in missing.stderr and "Traceback" not in missing.stderr


def test_html_escapes_what_clients_sent():
    """Reply text and plugin names come from the log, where a client's words can be: never markup."""
    report = Report()
    report.read_lines(['4711 Connection from x [192.0.2.1]',
                       '4711 (rcpt) evil<b>: reject 192.0.2.1: 550 <script>alert(1)</script> "x" & y'])
    page = render_html(report)
    assert "<script" not in page and "evil<b>" not in page
    assert "evil&lt;b&gt;" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch


# --------------------------------------------------------------------------
# The page in a real browser
# --------------------------------------------------------------------------


class _Dom(html.parser.HTMLParser):
    """Collects the rendered DOM's SVG bars, card values and table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: list[dict[str, str]] = []
        self.cards: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._card: str | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._svg: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg":
            self._svg = attrs.get("id")
        if tag == "rect" and "bar" in (attrs.get("class") or ""):
            self.bars.append({**attrs, "chart": self._svg})
        if tag == "div" and attrs.get("class") == "card":
            self._card = attrs["id"]
        if tag == "table":
            self._table = attrs["id"]
            self.tables[self._table] = []
        if tag == "tr" and self._table:
            self.tables[self._table].append([])
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table":
            self._table = None
        if tag == "div":
            self._card = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._card and data.strip() and self._card not in self.cards:
            self.cards[self._card] = data.strip()


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]
    return subprocess.run([find_binary("chromium"), *flags, *args], capture_output=True, text=True, timeout=120)


def _png_colors(path: Path) -> set[bytes]:
    """The RGB colours of an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data[pos + 8:pos + 8 + length])
        elif kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = header
    assert depth == 8 and color_type in (2, 6) and interlace == 0
    bpp = 3 if color_type == 2 else 4
    stride, raw = width * bpp, zlib.decompress(idat)
    previous, colors = bytearray(stride), set()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, previous))
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + previous[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                a, b = (line[i - bpp] if i >= bpp else 0), previous[i]
                c = previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colors.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp))
        previous = line
    return colors


def _shift_hours(source: Path, target: Path, hours: int) -> None:
    """Copy multilog lines with their @tai64n stamps moved `hours` back (the lines themselves unchanged)."""
    with open(source) as src, open(target, "w") as out:
        for line in src:
            label = int(line[1:17], 16) - hours * 3600
            out.write(f"@{label:016x}{line[17:]}")


@pytest.mark.components
def test_html_report_in_chromium(tmp_path):
    """Real multilog and rsyslog logs of real sessions (one copy moved two hours back, so that the chart
    has two hours), rendered by headless Chromium: the DOM it built and the screenshot it took."""
    (tmp_path / "sys").mkdir()
    current = logsamples.multilog_log(tmp_path / "main")
    syslog = logsamples.syslog_log(tmp_path / "sys")
    earlier = tmp_path / "earlier"
    _shift_hours(current, earlier, 2)
    page = tmp_path / "report.html"
    run = qpsmtpd_report("--html", str(page), str(earlier), str(current), str(syslog))
    assert run.returncode == 0, run.stderr

    expected = build_report([str(earlier), str(current), str(syslog)])
    assert len(expected.by_hour) >= 2 and expected.totals.connections == 36

    dump = _chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile1")
    assert "</svg>" in dump.stdout, dump.stderr[-2000:]
    dom = _Dom()
    dom.feed(dump.stdout)
    assert dom.cards == {"total-connections": "36", "total-messages": "6", "total-refused": "27",
                         "total-deferred": "3", "total-plugin": "0"}
    hour_bars = [bar for bar in dom.bars if bar["chart"] == "chart-hours"]
    shown: dict[str, dict[str, int]] = {}
    for bar in hour_bars:
        shown.setdefault(bar["data-hour"], {})[bar["class"].split()[1]] = int(bar["data-count"])
    assert shown == {hour: {v: getattr(t, v) for v in ("accept", "reject", "defer", "fault") if getattr(t, v)}
                     for hour, t in expected.by_hour.items()}
    assert sum(counts.get("reject", 0) for counts in shown.values()) == 27
    # bar heights are proportional to the counts they stand for
    per_unit = {float(bar["height"]) / int(bar["data-count"]) for bar in hour_bars}
    assert max(per_unit) == pytest.approx(min(per_unit), rel=0.01)
    plugin_bars = {bar["data-plugin"]: int(bar["data-count"]) for bar in dom.bars if bar["chart"] == "chart-plugins"}
    assert plugin_bars == {"auth::auth_flat_file": 18, "rcpt_ok": 9, "random_error": 3}
    assert dom.tables["top-ips"][1][:3] == [AUTH_IP, "18", "0"]  # first row after the header
    assert [row[1] for row in dom.tables["reasons"][1:]] == ["auth::auth_flat_file", "rcpt_ok", "random_error"]

    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=900,700", page.as_uri(), profile=tmp_path / "profile2")
    colors = _png_colors(shot)
    for name, rgb in (("refused", (0xc6, 0x28, 0x28)), ("accepted", (0x2e, 0x7d, 0x32)),
                      ("deferred", (0xef, 0x8f, 0x00))):
        assert bytes(rgb) in colors, f"no {name} bar painted"
