"""# greylisting — delay mail from senders not seen before

Greylisting (RFC 6647) answers an unknown client with a temporary failure.
Real mail servers retry a few minutes later; much spamware never does.
The plugin remembers each *triplet* — by default only the client's IP
address; optionally also the envelope sender and the recipient — and
decides:

| state of the triplet | reply |
| --- | --- |
| unknown, or not seen for `white_timeout` | `450 This mail is temporarily denied` (first seen now) |
| first seen less than `black_timeout` ago | `450 This mail is temporarily denied` again |
| retried after `black_timeout` | accepted; the triplet becomes white |
| white: delivered within the last `white_timeout` | accepted; each delivery renews it |

Clients that are never greylisted: relay clients (AUTH, `relay`),
whitelisted hosts and senders (the `whitelist` and `dns_whitelist_soft`
plugins: list them first), hosts in the `greylist_exclude_files` lists,
clients from a country listed in `geoip`, and, with `p0f`, clients whose
operating-system fingerprint does not match.

The state lives in a store shared by every connection (see
`lib/qpsmtpd/state.py`): a local SQLite file `state.sqlite` in
`db_dir`, or a Redis server shared by several MX hosts (`redis`, or
`config/state_redis`; see docs/multi-mx.md).  **When the store is down or
locked** past `timeout`, the client is let through (as the Perl plugin
does), with a log line `UNABLE TO OBTAIN GREYLIST RESULT: ...`.

## Arguments

Each may also be given in `config/denysoft_greylist` (one `name value` a
line); the plugin line wins.

* `remote_ip 1|0` — the client's IP in the triplet (default 1);
* `sender 1|0` — the envelope sender in the triplet (default 0);
* `recipient 1|0` — the recipient in the triplet (default 0); the check
  then runs at RCPT, per recipient;
* `per_recipient 1|0` — check at RCPT and read `denysoft_greylist` per
  recipient (through the `user_config` hook) so each recipient can have
  its own settings;
* `black_timeout SECONDS` — how long a new triplet is refused (default
  3000, 50 minutes);
* `white_timeout SECONDS` — how long a triplet stays known without a
  delivery (default 3110400, 36 days);
* `grey_timeout SECONDS` — accepted and ignored (as in the Perl plugin);
* `deny_late 1|0` — refuse at DATA instead of MAIL (so that every
  recipient is logged); at RCPT (`recipient`, `per_recipient`) the refusal
  comes at once, except for a null sender (`<>`), refused at DATA;
* `reject 1|0` — `0` only records and logs (seed the database for a week
  or two before turning it on); `mode testonly|off` is the old spelling;
* `db_dir PATH` — the local store's directory (default: the first
  writable of `/var/lib/qpsmtpd/greylisting`, `<qpsmtpd dir>/var/db`,
  `<qpsmtpd dir>/config`); it must be writable by the user qpsmtpd runs
  as (SQLite keeps `state.sqlite-wal` and `-shm` beside the file);
* `redis HOST[:PORT]` — keep the state in Redis (port 6379 by default;
  also `redis://...`, `rediss://...` URLs and a unix socket path); needs
  redis-py (`pip install redis`, Debian `python3-redis`);
* `timeout SECONDS` — the longest wait for the store (default 1);
* `p0f KEY,VALUE,...` — greylist only clients whose p0f fingerprint
  (the `p0f` connection note set by `ident/p0f`) matches one of: `genre`
  and `detail` (case-insensitive pattern), `link` (pattern), `distance`
  (more hops than VALUE), `uptime` (fewer hours than VALUE), e.g.
  `p0f genre,windows,link,dsl`;
* `geoip CC,CC,...` — never greylist clients from these countries (the
  `geoip_country` connection note set by `ident/geoip`), e.g. `geoip US,UK`;
* `nfslock 1|0`, `upgrade 1|0` — accepted for compatibility, without
  effect (do not put the local store on NFS: use Redis to share it);
* `loglevel N`.

## Config files

* `denysoft_greylist` — defaults for the arguments above (`name value`);
* `greylist_exclude_files` — paths (relative ones to the qpsmtpd
  directory) of lists in postgrey's `whitelist_clients` format: one entry
  a line, `#` comments; an IP address, a host name (the client's reverse
  DNS name, exactly) or `/regular expression/` on that name.

## Example

    greylisting black_timeout 300 sender 1 db_dir /var/lib/qpsmtpd/greylisting
    greylisting redis 10.0.0.5:6379 geoip US,CA

## Log

    (mail) greylisting: fail: initial DENYSOFT, unknown
    (mail) greylisting: fail: black DENYSOFT - 2 deferred connections
    (mail) greylisting: pass: timed out (grey)
    (mail) greylisting: pass: white, 3 deliveries
    (mail) greylisting: UNABLE TO OBTAIN GREYLIST RESULT: redis store 10.0.0.5:6379: ...; letting the client through
"""

from __future__ import annotations

import os

from qpsmtpd import state
from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, DENYSOFT, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd.plugin import Plugin

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DENY_MESSAGE = "This mail is temporarily denied"
DEFAULTS: dict[str, Any] = {
    "remote_ip": "1", "sender": "0", "recipient": "0", "per_recipient": "0", "deny_late": "0",
    "reject": "1", "black_timeout": str(50 * 60), "white_timeout": str(36 * 24 * 3600),
}
P0F_KEYS = ("genre", "detail", "uptime", "link", "distance")


def _true(value: Any) -> bool:
    """Perl's truth for an argument word: empty and `0` are false."""
    return value is not None and str(value).strip() not in ("", "0")


def _seconds(value: Any, default: int) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(default)


class Greylisting(state.StoreUser, Plugin):
    arguments = Arguments(
        Option("remote_ip"), Option("sender"), Option("recipient"), Option("per_recipient"),
        Option("deny_late"), Option("reject"), Option("mode"),
        Option("black_timeout", kind="int", minimum=0), Option("white_timeout", kind="int", minimum=0),
        Option("grey_timeout", help="ignored, as in the Perl plugin"),
        Option("db_dir"), Option("redis"), Option("timeout", kind="float", minimum=0.01, maximum=60),
        Option("nfslock"), Option("upgrade"), Option("p0f"), Option("geoip"),
    )

    def register(self, qp: Any, *args: str) -> None:
        self.settings = self.merged_settings(qp.config("denysoft_greylist"), {
            name: str(value) for name, value in self.opts.items() if value is not None})
        if _true(self.settings.get("nfslock")):
            self.log(LOGWARN, "nfslock has no effect: keep the local store off NFS, or use redis")
        self.prepare_store(qp, self.settings.get("redis"), self.settings.get("db_dir"))
        self.exclude_ips: set[str] = set()
        self.exclude_hosts: set[str] = set()
        self.exclude_patterns: list[Any] = []
        self.load_exclude_files()
        if _true(self.settings.get("recipient")) or _true(self.settings.get("per_recipient")):
            self.register_hook("rcpt", "rcpt_handler")
        else:
            self.register_hook("mail", "mail_handler")
        self.register_hook("data", "data_handler")

    def merged_settings(self, config_lines: list[str], given: dict[str, str]) -> dict[str, str]:
        """Defaults, then `denysoft_greylist` lines, then the plugin line (Perl's order)."""
        settings = dict(DEFAULTS)
        for line in config_lines:
            name, _space, value = line.strip().partition(" ")
            if name:
                settings[name] = value.strip()
        settings.update(given)
        known = set(self.arguments.names())
        unknown = sorted(name for name in settings if name not in known)
        if unknown:
            self.log(LOGERROR, f"invalid parameter(s): {','.join(unknown)}")
        if "mode" in settings and "reject" not in given:
            settings["reject"] = "0" if settings["mode"].lower() in ("testonly", "off") else "1"
        return settings

    # -- the store ------------------------------------------------------------
    def store(self) -> state.Store:
        if self._store is None:
            timeout = self.settings.get("timeout")
            self._store = state.open_store(
                self.qp, "greylist", redis=self.settings.get("redis") or None,
                db_dir=self.settings.get("db_dir") or None, own_dir="/var/lib/qpsmtpd/greylisting",
                timeout=float(timeout) if timeout else None)
        return self._store

    # -- exclusion lists ---------------------------------------------------------
    def load_exclude_files(self) -> None:
        for name in self.qp.config("greylist_exclude_files"):
            path = name.strip()
            if path and not os.path.isabs(path):
                path = os.path.join(self.qp.install_dir, path)
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    lines = handle.readlines()
            except OSError as error:
                self.log(LOGERROR, f"Couldn't open greylist exclude file {path}: {error.strerror}")
                continue
            for line in lines:
                entry = "".join(line.split("#", 1)[0].split())
                if entry:
                    self.exclude_entry(entry)

    def exclude_entry(self, entry: str) -> None:
        if len(entry) > 2 and entry.startswith("/") and entry.endswith("/"):
            import re  # only when a list has patterns

            try:
                self.exclude_patterns.append(re.compile(entry[1:-1]))
            except re.error as error:
                self.log(LOGERROR, f"bad pattern {entry} in a greylist exclude file: {error}")
        elif _is_ip(entry):
            self.exclude_ips.add(entry)
        else:
            self.exclude_hosts.add(entry.lower())

    def exclude_file_match(self) -> bool:
        connection = self.connection
        if connection.remote_ip in self.exclude_ips:
            return True
        host = (connection.remote_host or "").lower()
        if not host or host.startswith("["):
            return False
        return host in self.exclude_hosts or any(pattern.search(host) for pattern in self.exclude_patterns)

    def exclude(self) -> bool:
        if self.is_immune():
            return True
        if self.settings.get("p0f") and not self.p0f_match():
            return True
        if self.geoip_match():
            return True
        if self.exclude_file_match():
            self.log(LOGINFO, "skip, exclude file match")
            return True
        return False

    def p0f_match(self) -> bool:
        fingerprint = self.connection.notes.get("p0f")
        if not isinstance(fingerprint, dict):
            self.log(LOGERROR, "p0f info missing")
            return False
        words = str(self.settings.get("p0f")).split(",")
        for key, wanted in zip(words[0::2], words[1::2]):
            if key not in P0F_KEYS:
                if key:
                    self.log(LOGERROR, f"discarding invalid match key ({key})")
                continue
            seen = fingerprint.get(key)
            if seen is None or wanted == "":
                continue
            if _p0f_matches(key, seen, wanted):
                self.log(LOGDEBUG, f"p0f {key} match ({wanted})")
                return True
        self.log(LOGINFO, "skip: no p0f match")
        return False

    def geoip_match(self) -> bool:
        countries = self.settings.get("geoip")
        if not countries:
            return False
        country = self.connection.notes.get("geoip_country")
        name = self.connection.notes.get("geoip_country_name") or ""
        if not country:
            self.log(LOGINFO, "skip: no geoip country")
            return False
        if str(country).lower() in {code.strip().lower() for code in countries.split(",")}:
            self.log(LOGINFO, f"pass: geoip country match ({country}, {name})")
            return True
        self.log(LOGINFO, f"skip: no geoip match ({name or country})")
        return False

    # -- hooks --------------------------------------------------------------------
    def mail_handler(self, transaction: Any, sender: Any, params: Any = None) -> Any:
        code, message = self.greylist(sender, None, self.settings)
        if code != DENYSOFT:
            return DECLINED
        if not _true(self.settings.get("deny_late")):
            return DENYSOFT, message
        transaction.notes["greylist"] = message
        return DECLINED

    def rcpt_handler(self, transaction: Any, recipient: Any, params: Any = None) -> Any:
        settings = self.settings
        if _true(settings.get("per_recipient")):
            settings = self.merged_settings(self.qp.config("denysoft_greylist", recipient), {
                name: str(value) for name, value in self.opts.items() if value is not None})
        sender = transaction.sender
        code, message = self.greylist(sender, recipient, settings)
        if code == DENYSOFT:
            if sender is not None and sender.format() != "<>":
                return DENYSOFT, message
            transaction.notes["greylist"] = message
        return DECLINED

    def data_handler(self, transaction: Any) -> Any:
        message = transaction.notes.get("greylist")
        if not message:
            return DECLINED
        if (transaction.notes.get("whitelistrcpt") or 0) == len(transaction.recipients):
            self.log(LOGWARN, "skip: all recipients whitelisted")
            return DECLINED
        return DENYSOFT, message

    # -- the decision ----------------------------------------------------------------
    def greylist_key(self, sender: Any, recipient: Any, settings: dict[str, str]) -> str | None:
        parts = []
        if _true(settings.get("remote_ip")):
            parts.append(self.connection.remote_ip)
        if _true(settings.get("sender")):
            parts.append(sender.address if sender is not None and sender.format() != "<>" else "")
        if _true(settings.get("recipient")) and recipient is not None:
            parts.append(recipient.address)
        if not parts:
            self.log(LOGERROR, "enable one of remote_ip, sender, or recipient!")
            return None
        return ":".join(parts)

    def greylist(self, sender: Any, recipient: Any, settings: dict[str, str]) -> tuple[int, str]:
        if self.exclude():
            return DECLINED, ""
        key = self.greylist_key(sender, recipient, settings)
        if key is None:
            return DECLINED, ""
        black = _seconds(settings.get("black_timeout"), 3000)
        white = _seconds(settings.get("white_timeout"), 3110400)
        try:
            verdict, log_text = self.store().update(key, lambda value: _next_state(value, black, white),
                                                    max(white, black, 1.0))
        except state.StateError as error:
            self.log(LOGERROR, f"UNABLE TO OBTAIN GREYLIST RESULT: {error}; letting the client through")
            return DECLINED, ""
        if verdict == "deny":
            self.log(LOGWARN, f"fail: {log_text}")
            if not _true(settings.get("reject")):
                self.log(LOGINFO, "reject 0: not refusing")
                return DECLINED, ""
            return DENYSOFT, DENY_MESSAGE
        self.log(LOGINFO, f"pass: {log_text}")
        return DECLINED, ""


def _next_state(value: str | None, black_timeout: float, white_timeout: float) -> tuple[str, tuple[str, str]]:
    """A triplet's record `first-seen:new:deferrals:deliveries` -> (new record, (verdict, log text)).

    The record keeps the Perl plugin's layout; timestamps are whole seconds.
    """
    now = int(state.clock())
    fields = (value or "").split(":")
    if value and len(fields) == 4 and all(field.lstrip("-").isdigit() for field in fields):
        stamp, new, black, white = (int(field) for field in fields)
        age = now - stamp
        if white:
            if age < white_timeout:
                return f"{now}:{new}:{black}:{white + 1}", ("pass", f"white, {white + 1} deliveries")
        elif age < black_timeout:
            return f"{stamp}:{new}:{black + 1}:0", ("deny", f"black DENYSOFT - {black + 1} deferred connections")
        elif age < white_timeout:
            return f"{now}:{new}:{black}:1", ("pass", "timed out (grey)")
    return f"{now}:1:0:0", ("deny", "initial DENYSOFT, unknown")


def _p0f_matches(key: str, seen: Any, wanted: str) -> bool:
    if key in ("distance", "uptime"):
        try:
            seen_number, wanted_number = float(seen), float(wanted)
        except (TypeError, ValueError):
            return False
        return seen_number > wanted_number if key == "distance" else seen_number < wanted_number
    import re  # only with p0f matching configured

    try:
        return re.search(wanted, str(seen), re.IGNORECASE) is not None
    except re.error:
        return False


def _is_ip(text: str) -> bool:
    if ":" in text:
        import ipaddress  # only for an IPv6-looking entry

        try:
            ipaddress.ip_address(text)
        except ValueError:
            return False
        return True
    parts = text.split(".")
    return len(parts) == 4 and all(part.isdigit() and int(part) < 256 for part in parts)
