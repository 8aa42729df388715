"""# http_config — config items from a web server

Answers config lookups over HTTP: for item `me`, each URL given as
argument is tried in turn with the item name appended
(`http://cfg.example/qp/me`, then `http://other/cgi?config=me`); the first
non-empty answer is used (one item per line, `#` comments and blank lines
dropped).  When no URL answers, the usual config files are read.

Answers are kept for the rest of the connection, so each item costs at
most one request per connection.  Each request times out after
`http_config_timeout` seconds (default 5) — a slow server delays the
session, so keep the server close.  Only `http:` and `https:` URLs are
used.

## Arguments

The URLs, in order.

## Example

    http_config http://localhost/~smtpd/config/ http://www.example.com/cgi-bin/qp?config=
"""

from qpsmtpd.constants import OK, DECLINED, LOGWARN, LOGNOTICE, LOGDEBUG
from qpsmtpd.args import Arguments

arguments = Arguments(free=True)  # the words are the URLs, in order


TIMEOUT = 5.0


def register(self, qp, *args):
    self.urls = [url for url in args if url.lower().startswith(("http://", "https://"))]
    for url in args:
        if url not in self.urls:
            self.log(LOGWARN, f"ignoring non-HTTP URL {url}")
    self.answers = {}
    self.busy = False


def hook_config(self, transaction, name):
    if self.busy or name in ("http_config_timeout", "logging", "loglevel"):
        return DECLINED
    if name not in self.answers:
        self.busy = True
        try:
            self.answers[name] = self.fetch(name)
        finally:
            self.busy = False
    lines = self.answers[name]
    return (OK, lines) if lines else DECLINED


def timeout(self):
    lines = self.qp.conf.get("http_config_timeout")
    try:
        return float(lines[0]) if lines else TIMEOUT
    except ValueError:
        return TIMEOUT


def fetch(self, name):
    import urllib.error
    import urllib.parse
    import urllib.request

    self.log(LOGNOTICE, f"http_config called with {name}")
    timeout = self.timeout()
    for url in self.urls:
        self.log(LOGDEBUG, f"http_config loading from {url}")
        try:
            with urllib.request.urlopen(url + urllib.parse.quote(name), timeout=timeout) as response:
                text = response.read(1 << 20).decode("utf-8", "replace")
        except (urllib.error.URLError, OSError, ValueError) as error:
            self.log(LOGWARN, f"http_config: {url}{name}: {error}")
            continue
        lines = [line.strip() for line in text.replace("\r", "\n").split("\n")]
        lines = [line for line in lines if line and not line.startswith("#")]
        if lines:
            return lines
    return []
