"""`qpsmtpd.py --report`: what the server did, read back from its logs.

Reads the lines of any logging plugin, in any of the places they end up:
logging/warn, logging/connection_id or logging/transaction_id on stderr
(raw, through multilog with `@tai64n` stamps or after `tai64nlocal`, or
from `journalctl -o short-iso`), logging/file's files and logging/syslog's
lines in a syslog file.  Rotated files ending in `.gz` are read as they are.

It counts what the engine logs at LOGNOTICE (see docs/logging.md):

    <pid> Connection from <name> [<client ip>]
    <pid> (<hook>) <plugin>: <verdict> <client ip>: <code> <first reply line>

(verdict `accept` for queued messages, `reject`, `defer` or `fault`), and,
when the log has LOGINFO lines too, `dispatching MAIL FROM:<sender>` for
the senders.  The result: connections, messages accepted, refusals,
deferrals and faults per plugin and reason, the top client addresses and
senders, and everything per hour; as plain text (`render_text`) or as one
self-contained HTML page with SVG charts that needs no network
(`render_html`).
"""

from __future__ import annotations

import datetime as _dt
import html
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

VERDICTS = ("accept", "reject", "defer", "fault")
MAX_OPEN_SESSIONS = 50_000  # sessions remembered at once (oldest forgotten first)

_TAI64N = re.compile(r"@([0-9a-f]{16})([0-9a-f]{8})\s+")
_ISO = re.compile(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s+")
_ASCTIME = re.compile(r"(?:[A-Z][a-z]{2} )?([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.\d+)?(?: (\d{4}))?\s+")
_SOURCE = re.compile(r"(?:[\w.-]+ )?[\w./-]+\[\d+\]:\s+")  # "host prog[pid]: " or "host[pid]: "
# the same after a time stamp in a format we do not know (logging/file's tsformat is free)
_SOURCE_LATER = re.compile(r".{0,60}?\s(?:[\w.-]+ )?[\w./-]+\[\d+\]:\s+")
_SESSION = re.compile(r"(\d+)(?:\.(\d+))?(?:\.\d+)?\s+")
_HOOK = re.compile(r"\((\w+)\) (\S+?): ")
_DECISION = re.compile(r"(accept|reject|defer|fault) (\S+): (\d{3})\b ?(.*)")
_CONNECTION = re.compile(r"Connection from .*\[([^\]\s]+)\]\s*$")
_MAIL_FROM = re.compile(r"dispatching MAIL FROM:\s*<([^>]*)>", re.I)
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_TAI_OFFSET = 2**62 + 10  # TAI64 label of 1970-01-01 00:00:00 UTC, as daemontools counts it

# variable parts of a reply, replaced so that equal reasons are counted together
_NORMALIZE = (
    (re.compile(r"<[^<>]*>"), "<…>"),
    (re.compile(r"\b[\w.+=-]+@[\w.-]+\b"), "<address>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "<ip>"),
    (re.compile(r"(?<![\w:])[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}(?![\w:])"), "<ip>"),
)


@dataclass
class LogLine:
    """One log line taken apart; `when` is a Unix time or None."""
    when: float | None
    session: str | None
    hook: str | None
    plugin: str | None
    message: str


def _take_time(line: str) -> tuple[float | None, str]:
    """The time stamp at the start of the line (if any) and the rest."""
    if match := _TAI64N.match(line):
        seconds = int(match.group(1), 16) - _TAI_OFFSET + int(match.group(2), 16) / 1e9
        return seconds, line[match.end():]
    if match := _ISO.match(line):
        text = match.group(1).replace(",", ".").replace(" ", "T")
        try:
            stamp = _dt.datetime.fromisoformat(text)
        except ValueError:
            return None, line
        return stamp.timestamp(), line[match.end():]
    if (match := _ASCTIME.match(line)) and match.group(1) in _MONTHS:
        month, day = _MONTHS[match.group(1)], int(match.group(2))
        hour, minute, second = (int(match.group(n)) for n in (3, 4, 5))
        year = int(match.group(6)) if match.group(6) else _guess_year(month, day)
        try:
            stamp = _dt.datetime(year, month, day, hour, minute, second)
        except ValueError:
            return None, line
        return stamp.timestamp(), line[match.end():]
    return None, line


def _guess_year(month: int, day: int) -> int:
    """Syslog stamps have no year: this year, unless that would be in the future."""
    today = _dt.date.today()
    return today.year - 1 if (month, day) > (today.month, today.day + 1) else today.year


def parse_line(line: str) -> LogLine | None:
    """Take one line of any supported format apart; None for lines that are not qpsmtpd's."""
    when, rest = _take_time(line.rstrip("\r\n"))
    parsed = _parse_rest(when, rest, _SOURCE)
    if parsed is None or (parsed.hook is None and not parsed.message.startswith(("Connection from", "dispatching"))):
        # perhaps a time stamp we could not read before "host[pid]: "; never tried
        # on a line that parsed, where client text could contain such a pattern
        later = _parse_rest(when, rest, _SOURCE_LATER)
        if later is not None:
            return later
    return parsed


def _parse_rest(when: float | None, rest: str, source: re.Pattern) -> LogLine | None:
    if match := source.match(rest):
        rest = rest[match.end():]
    match = _SESSION.match(rest)
    if not match:
        return None
    first, second = match.group(1), match.group(2)
    if second is not None:  # a connection id: <connect time>.<pid>
        session = f"{first}.{second}"
        if when is None:
            when = float(first)
    else:
        session = first
    rest = rest[match.end():]
    hook = plugin = None
    if match := _HOOK.match(rest):
        hook, plugin = match.group(1), match.group(2)
        rest = rest[match.end():]
    return LogLine(when, session, hook, plugin, rest)


def normalize_reason(code: str, text: str) -> str:
    for pattern, replacement in _NORMALIZE:
        text = pattern.sub(replacement, text)
    return f"{code} {text}".strip()


@dataclass
class _Session:
    ip: str | None = None
    sender: str | None = None


@dataclass
class Tally:
    """Counts for one client address, sender or hour."""
    connections: int = 0
    accept: int = 0
    reject: int = 0
    defer: int = 0
    fault: int = 0

    def add(self, verdict: str) -> None:
        setattr(self, verdict, getattr(self, verdict) + 1)


@dataclass
class Report:
    """Everything counted; fill it with `read_lines`, show it with render_text/render_html."""
    files: list[str] = field(default_factory=list)
    lines: int = 0
    lines_used: int = 0
    first: float | None = None
    last: float | None = None
    totals: Tally = field(default_factory=Tally)
    reasons: Counter = field(default_factory=Counter)  # (verdict, plugin, reason) -> n
    by_plugin: dict[str, Tally] = field(default_factory=dict)
    by_ip: dict[str, Tally] = field(default_factory=dict)
    by_sender: dict[str, Tally] = field(default_factory=dict)
    by_hour: dict[str, Tally] = field(default_factory=dict)
    senders_logged: bool = False
    _sessions: dict[str, _Session] = field(default_factory=dict, repr=False)

    def read_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.lines += 1
            parsed = parse_line(line)
            if parsed is not None and self._count(parsed):
                self.lines_used += 1

    def _session(self, key: str, new: bool = False) -> _Session:
        session = self._sessions.get(key)
        if session is None or new:
            self._sessions.pop(key, None)
            session = self._sessions[key] = _Session()
            if len(self._sessions) > MAX_OPEN_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
        return session

    def _hour(self, when: float | None) -> Tally:
        key = _dt.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:00") if when is not None else "unknown"
        return self.by_hour.setdefault(key, Tally())

    def _seen(self, when: float | None) -> None:
        if when is not None:
            self.first = when if self.first is None else min(self.first, when)
            self.last = when if self.last is None else max(self.last, when)

    def _count(self, line: LogLine) -> bool:
        if line.hook is None:
            if match := _CONNECTION.match(line.message):
                session = self._session(line.session, new=True)
                session.ip = match.group(1)
                for tally in (self.totals, self.by_ip.setdefault(session.ip, Tally()), self._hour(line.when)):
                    tally.connections += 1
                self._seen(line.when)
                return True
            if match := _MAIL_FROM.match(line.message):
                sender = self._session(line.session).sender = match.group(1) or "<>"
                self.by_sender.setdefault(sender, Tally()).connections += 1  # for a sender: MAIL FROMs
                self.senders_logged = True
                return True
            return False
        match = _DECISION.match(line.message)
        if not match:
            return False
        verdict, ip, code, text = match.groups()
        session = self._session(line.session)
        session.ip = session.ip or ip
        tallies = [self.totals, self.by_plugin.setdefault(line.plugin, Tally()),
                   self.by_ip.setdefault(ip, Tally()), self._hour(line.when)]
        if session.sender is not None:
            tallies.append(self.by_sender.setdefault(session.sender, Tally()))
        for tally in tallies:
            tally.add(verdict)
        if verdict != "accept":
            self.reasons[(verdict, line.plugin, normalize_reason(code, text))] += 1
        if verdict == "accept" or line.hook == "mail":
            session.sender = None  # the transaction is over (or its sender refused)
        self._seen(line.when)
        return True


def open_log(path: str) -> Iterator[str]:
    """The lines of a log file ('-' is stdin; '.gz' files are decompressed)."""
    if path == "-":
        yield from sys.stdin
        return
    if path.endswith(".gz"):
        import gzip
        handle = gzip.open(path, "rt", encoding="utf-8", errors="replace")
    else:
        handle = open(path, encoding="utf-8", errors="replace")
    with handle:
        yield from handle


def build_report(paths: Iterable[str]) -> Report:
    report = Report()
    for path in paths:
        report.files.append(path)
        report.read_lines(open_log(path))
    return report


def _top(table: dict[str, Tally], n: int, key) -> list[tuple[str, Tally]]:
    return sorted(table.items(), key=lambda item: (-key(item[1]), item[0]))[:n]


def _when(seconds: float | None) -> str:
    return _dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M") if seconds is not None else "?"


def _activity(tally: Tally) -> int:
    return tally.connections + tally.accept + tally.reject + tally.defer + tally.fault


def _summary_rows(report: Report) -> list[tuple[str, int]]:
    t = report.totals
    return [("connections", t.connections), ("messages accepted", t.accept), ("refused (5xx)", t.reject),
            ("deferred (4xx)", t.defer), ("plugin faults", t.fault)]


def render_text(report: Report, top: int = 10) -> str:
    out: list[str] = []
    add = out.append
    add(f"qpsmtpd report: {len(report.files)} file(s), {report.lines} lines ({report.lines_used} used), "
        f"{_when(report.first)} to {_when(report.last)}")
    add("")
    for label, value in _summary_rows(report):
        add(f"  {label:<18} {value:>8}")
    add("")
    add("Refusals, deferrals and faults by plugin and reason")
    if report.reasons:
        add(f"  {'count':>6}  {'verdict':<7}  {'plugin':<28}  reply")
        for (verdict, plugin, reason), count in report.reasons.most_common():
            add(f"  {count:>6}  {verdict:<7}  {plugin:<28}  {reason}")
    else:
        add("  none")
    add("")
    columns = f"{'conn':>6} {'accept':>6} {'reject':>6} {'defer':>6} {'fault':>6}"

    def row(tally: Tally, name: str) -> str:
        return (f"  {tally.connections:>6} {tally.accept:>6} {tally.reject:>6} {tally.defer:>6} {tally.fault:>6}"
                f"  {name}")
    add(f"Top {top} client addresses")
    add(f"  {columns}  address")
    out.extend(row(tally, ip) for ip, tally in _top(report.by_ip, top, _activity))
    add("")
    add(f"Top {top} senders")
    if report.by_sender:
        add(f"  {columns}  sender (conn: MAIL FROMs)")
        out.extend(row(tally, sender) for sender, tally in _top(report.by_sender, top, _activity))
    else:
        add("  (senders are logged at LOGINFO: `dispatching MAIL FROM:<...>`)")
    add("")
    add("Per hour")
    add(f"  {columns}  hour")
    out.extend(row(tally, hour) for hour, tally in sorted(report.by_hour.items()))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------

_COLORS = {"accept": "#2e7d32", "reject": "#c62828", "defer": "#ef8f00", "fault": "#6a1b9a"}
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse}td,th{padding:.2em .7em;border-bottom:1px solid #ddd;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em}
.card b{display:block;font-size:1.6em}
.legend span{display:inline-block;margin-right:1.2em}.legend i{display:inline-block;width:.9em;height:.9em;
margin-right:.3em;vertical-align:middle}
svg text{font-size:11px;fill:#333}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _legend(verdicts: Iterable[str]) -> str:
    names = {"accept": "accepted", "reject": "refused", "defer": "deferred", "fault": "faults"}
    return '<p class="legend">' + "".join(
        f'<span><i style="background:{_COLORS[v]}"></i>{names[v]}</span>' for v in verdicts) + "</p>"


def _hour_chart(report: Report) -> str:
    """Stacked bars per hour: accepted, refused, deferred and faults."""
    hours = sorted(report.by_hour.items())
    if not hours:
        return "<p>No decisions in the log.</p>"
    verdicts = ("accept", "reject", "defer", "fault")
    peak = max(max(sum(getattr(t, v) for v in verdicts) for _, t in hours), 1)
    bar, gap, height, left, bottom = 28, 10, 200, 40, 70
    width = left + len(hours) * (bar + gap) + gap
    parts = [f'<svg id="chart-hours" role="img" aria-label="accepted and refused per hour" '
             f'width="{width}" height="{height + bottom + 10}" viewBox="0 0 {width} {height + bottom + 10}">']
    parts.append(f'<line x1="{left}" y1="10" x2="{left}" y2="{height + 10}" stroke="#999"/>')
    parts.append(f'<line x1="{left}" y1="{height + 10}" x2="{width}" y2="{height + 10}" stroke="#999"/>')
    parts.append(f'<text x="{left - 5}" y="16" text-anchor="end">{peak}</text>')
    parts.append(f'<text x="{left - 5}" y="{height + 10}" text-anchor="end">0</text>')
    for index, (hour, tally) in enumerate(hours):
        x = left + gap + index * (bar + gap)
        y = height + 10
        for verdict in verdicts:
            count = getattr(tally, verdict)
            if not count:
                continue
            h = count / peak * height
            y -= h
            parts.append(f'<rect class="bar {verdict}" data-hour="{_e(hour)}" data-count="{count}" x="{x}" '
                         f'y="{y:.1f}" width="{bar}" height="{h:.1f}" fill="{_COLORS[verdict]}">'
                         f'<title>{_e(hour)}: {count} {verdict}</title></rect>')
        label_y = height + 24
        parts.append(f'<text x="{x + bar / 2}" y="{label_y}" text-anchor="end" '
                     f'transform="rotate(-45 {x + bar / 2} {label_y})">{_e(hour[5:])}</text>')
    parts.append("</svg>")
    return _legend(verdicts) + "".join(parts)


def _plugin_chart(report: Report) -> str:
    """Horizontal bars: refusals (and deferrals) per plugin."""
    rows = sorted(((plugin, t) for plugin, t in report.by_plugin.items() if t.reject or t.defer or t.fault),
                  key=lambda item: (-(item[1].reject + item[1].defer + item[1].fault), item[0]))
    if not rows:
        return "<p>No refusals.</p>"
    peak = max(t.reject + t.defer + t.fault for _, t in rows)
    bar, gap, label, span = 20, 6, 230, 400
    height = len(rows) * (bar + gap) + gap
    parts = [f'<svg id="chart-plugins" role="img" aria-label="refusals by plugin" width="{label + span + 60}" '
             f'height="{height}" viewBox="0 0 {label + span + 60} {height}">']
    for index, (plugin, tally) in enumerate(rows):
        y = gap + index * (bar + gap)
        parts.append(f'<text x="{label - 6}" y="{y + bar * 0.7}" text-anchor="end">{_e(plugin)}</text>')
        x = label
        for verdict in ("reject", "defer", "fault"):
            count = getattr(tally, verdict)
            if not count:
                continue
            w = count / peak * span
            parts.append(f'<rect class="bar {verdict}" data-plugin="{_e(plugin)}" data-count="{count}" '
                         f'x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar}" fill="{_COLORS[verdict]}">'
                         f'<title>{_e(plugin)}: {count} {verdict}</title></rect>')
            x += w
        total = tally.reject + tally.defer + tally.fault
        parts.append(f'<text x="{x + 5:.1f}" y="{y + bar * 0.7}">{total}</text>')
    parts.append("</svg>")
    return _legend(("reject", "defer", "fault")) + "".join(parts)


def _table(table_id: str, head: list[str], rows: Iterable[list[object]], numeric_from: int) -> str:
    cells = "".join(f'<th class="{"n" if i >= numeric_from else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"n" if i >= numeric_from else ""}">{_e(c)}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>'


def _tally_cells(tally: Tally) -> list[object]:
    return [tally.connections, tally.accept, tally.reject, tally.defer, tally.fault]


def render_html(report: Report, top: int = 10) -> str:
    tally_head = ["connections", "accepted", "refused", "deferred", "faults"]
    cards = "".join(f'<div class="card" id="total-{_e(label.split()[0])}"><b>{value}</b>{_e(label)}</div>'
                    for label, value in _summary_rows(report))
    reasons = _table("reasons", ["verdict", "plugin", "reply", "count"],
                     ([verdict, plugin, reason, count]
                      for (verdict, plugin, reason), count in report.reasons.most_common()), 3)
    ips = _table("top-ips", ["client address", *tally_head],
                 ([ip, *_tally_cells(t)] for ip, t in _top(report.by_ip, top, _activity)), 1)
    if report.by_sender:
        senders = _table("top-senders", ["sender", "MAIL FROMs", *tally_head[1:]],
                         ([s, *_tally_cells(t)] for s, t in _top(report.by_sender, top, _activity)), 1)
    else:
        senders = "<p>Senders are logged at LOGINFO (<code>dispatching MAIL FROM:&lt;...&gt;</code>).</p>"
    hours = _table("per-hour", ["hour", *tally_head],
                   ([hour, *_tally_cells(t)] for hour, t in sorted(report.by_hour.items())), 1)
    files = ", ".join(report.files)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>qpsmtpd report {_e(_when(report.first))} to {_e(_when(report.last))}</title>
<style>{_CSS}</style></head>
<body>
<h1>qpsmtpd report</h1>
<p>{_e(_when(report.first))} to {_e(_when(report.last))}: {report.lines} lines ({report.lines_used} used)
from {_e(files)}</p>
<div class="cards">{cards}</div>
<h2>Accepted and refused per hour</h2>
{_hour_chart(report)}
<h2>Refusals by plugin</h2>
{_plugin_chart(report)}
<h2>Refusals, deferrals and faults by plugin and reason</h2>
{reasons}
<h2>Top {top} client addresses</h2>
{ips}
<h2>Top {top} senders</h2>
{senders}
<h2>Per hour</h2>
{hours}
</body></html>
"""


REPORT_USAGE = """usage: qpsmtpd.py --report [--html FILE] [--top N] LOGFILE...

Counts connections, accepted messages, refusals, deferrals and faults per
plugin and reason, the top client addresses and senders, per hour, from
the logs of any logging plugin (LOGNOTICE or more; '-' reads stdin; .gz
files are read too).  Prints plain text; --html FILE also writes one
self-contained HTML page with charts ('-': the page on stdout instead).
"""


def report_main(argv: list[str]) -> int:
    """`qpsmtpd.py --report ...`; argv is what follows --report."""
    html_path: str | None = None
    top = 10
    paths: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--html":
            html_path = next(args, None)
        elif arg == "--top":
            value = next(args, "")
            if not value.isdigit() or int(value) < 1:
                sys.stderr.write(f"qpsmtpd.py --report: --top needs a positive number\n{REPORT_USAGE}")
                return 2
            top = int(value)
        elif arg in ("-h", "--help"):
            sys.stdout.write(REPORT_USAGE)
            return 0
        else:
            paths.append(arg)
    if not paths or (html_path is None and "--html" in argv):
        sys.stderr.write(REPORT_USAGE)
        return 2
    try:
        report = build_report(paths)
    except OSError as error:
        sys.stderr.write(f"qpsmtpd.py --report: {error}\n")
        return 1
    if html_path == "-":
        sys.stdout.write(render_html(report, top))
        return 0
    sys.stdout.write(render_text(report, top))
    if html_path is not None:
        with open(html_path, "w", encoding="utf-8") as handle:
            handle.write(render_html(report, top))
    return 0
