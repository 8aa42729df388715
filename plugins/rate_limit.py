"""# rate_limit — limit connections, messages and recipients per client, sender, recipient and user

Counts what clients do in time windows and defers them when they do too
much.  The counts live in the same store as greylisting and karma (a
local SQLite file `state.sqlite`, or Redis: then every MX host
sharing the server shares the counts and the limits hold for the whole
site; see docs/multi-mx.md).  Not in the Perl qpsmtpd (it resembles
Haraka's `limit` plugin).

| argument | counts | per | over the limit |
| --- | --- | --- | --- |
| `concurrency N` | connections open at once (across all processes and hosts) | client | `421 4.7.0 Too many concurrent connections from your address, try again later` and disconnect |
| `connect N/PERIOD` | new connections | client | `421 4.7.0 Too many connections from your address, try again later` and disconnect |
| `mail N/PERIOD` | messages (MAIL commands) | client | `451 4.7.1 Too many messages from your address, slow down` |
| `rcpt N/PERIOD` | recipients (RCPT commands) | client | `450 4.7.1 Too many recipients from your address, slow down` |
| `sender N/PERIOD` | recipients | envelope sender address (`<>` counts as one sender) | `450 4.7.1 Too many recipients for sender <...>, slow down` |
| `recipient N/PERIOD` | messages to the address (RCPT commands naming it) | recipient address | `450 4.7.1 Too much mail for <...>, try again later` |
| `user N/PERIOD` | recipients | authenticated user (SMTP AUTH) | `450 4.7.1 Too many recipients for user ..., slow down` |

PERIOD is a number with `s`, `m`, `h` or `d` (`30s`, `1m`, `1h`, `1d`;
a bare number is seconds).  Windows are fixed and aligned to the clock (a
`1h` window starts at every full hour), so a count starts again from zero
at the start of each window.  Every attempt counts, refused ones too.
"Client" is the IP address, or its network with `network`/`network6`.

**Relay clients** (the `relay` plugin, AUTH) and whitelisted hosts and
senders are never limited by the client, sender and recipient limits; the
`user` limit is the one that applies to authenticated users (it is meant
to stop a stolen password from sending a flood).  List `relay` and
`whitelist` before `rate_limit`.

**When the store is down or locked** past `timeout`, nobody is limited:
the log says `rate_limit store unusable: ...; not limiting`.  A process
that ends without saying goodbye (killed) holds its `concurrency` slot
until `slot_ttl` runs out.

## Arguments

* the limits above (each optional; without any the plugin does nothing);
* `network BITS` — count IPv4 clients by their /BITS network (default 32:
  each address on its own); `network6 BITS` — the same for IPv6 (default 128);
* `reject 1|0` — `0` only logs what would have been refused;
* `slot_ttl SECONDS` — how long a connection counts for `concurrency`
  without a new MAIL (default 600; each MAIL renews it);
* `db_dir PATH` — the local store's directory (default: the first
  writable of `/var/lib/qpsmtpd/rate_limit`, `<qpsmtpd dir>/var/db`,
  `<qpsmtpd dir>/config`); it must be writable by the user qpsmtpd runs
  as (SQLite keeps `state.sqlite-wal` and `-shm` beside the file);
* `redis HOST[:PORT]` — keep the counts in Redis (see greylisting);
* `timeout SECONDS` — the longest wait for the store (default 1);
* `loglevel N`.

## Example

    relay
    rate_limit concurrency 5 connect 60/1m rcpt 200/1h network 24 sender 500/1d user 300/1h

## Log

    (rcpt) rate_limit: fail, 192.0.2.7 rcpt 201/200 in 1h
    (connect) rate_limit: fail, 192.0.2.7 concurrency 6/5
    (rcpt) rate_limit: rate_limit store unusable: local store ...: locked ...; not limiting
"""

from __future__ import annotations

import os

from qpsmtpd import state
from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd.plugin import Plugin
from qpsmtpd.replies import Reply

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
WINDOW_LIMITS = ("connect", "mail", "rcpt", "sender", "recipient", "user")


def parse_rate(text: str) -> tuple[int, int] | None:
    """`20/1m` -> (20, 60); None when it is not COUNT/PERIOD."""
    count, slash, period = text.strip().partition("/")
    if not slash or not count.isdigit() or not period:
        return None
    unit = UNITS.get(period[-1].lower())
    number = period[:-1] if unit else period
    if not number:
        number = "1"
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        return None
    if seconds < 1:
        return None
    return int(count), int(seconds)


def describe_period(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def client_network(ip: str, bits4: int, bits6: int) -> str:
    """The client's address, or its network `a.b.c.0/24` when grouping by network."""
    if ":" not in ip:
        if bits4 >= 32:
            return ip
        parts = ip.split(".")
        if len(parts) != 4 or not all(part.isdigit() for part in parts):
            return ip
        number = 0
        for part in parts:
            number = number * 256 + int(part)
        number &= (0xFFFFFFFF << (32 - bits4)) & 0xFFFFFFFF
        return ".".join(str((number >> shift) & 255) for shift in (24, 16, 8, 0)) + f"/{bits4}"
    if bits6 >= 128:
        return ip.lower()
    import ipaddress  # only for IPv6 clients grouped by network

    try:
        return str(ipaddress.ip_network(f"{ip}/{bits6}", strict=False))
    except ValueError:
        return ip.lower()


class RateLimit(state.StoreUser, Plugin):
    arguments = Arguments(
        Option("concurrency", kind="int", minimum=1),
        *(Option(name, help="COUNT/PERIOD, e.g. 20/1m") for name in WINDOW_LIMITS),
        Option("network", kind="int", default=32, minimum=1, maximum=32),
        Option("network6", kind="int", default=128, minimum=1, maximum=128),
        Option("reject", kind="bool", default=True),
        Option("slot_ttl", kind="int", default=600, minimum=10),
        Option("db_dir"), Option("redis"), Option("timeout", kind="float", minimum=0.01, maximum=60),
    )

    def register(self, qp: Any, *args: str) -> None:
        self.prepare_store(qp, self.opts.get("redis"), self.opts.get("db_dir"))
        self._slot: tuple[str, str] | None = None
        self.limits: dict[str, tuple[int, int]] = {}
        for name in WINDOW_LIMITS:
            text = self.opts.get(name)
            if text is None:
                continue
            rate = parse_rate(text)
            if rate is None:
                message = f"{name} {text}: not COUNT/PERIOD (e.g. 20/1m); this limit is off"
                self.log(LOGWARN, message)
                self.argument_warnings.append(message)
                continue
            self.limits[name] = rate
        if self.opts.get("concurrency") or "connect" in self.limits:
            self.register_hook("connect", "connect_handler")
            self.register_hook("post-connection", "release_slot")
        if "mail" in self.limits or self.opts.get("concurrency"):
            self.register_hook("mail", "mail_handler")
        if any(name in self.limits for name in ("rcpt", "sender", "recipient", "user")):
            self.register_hook("rcpt", "rcpt_handler")

    def store(self) -> state.Store:
        if self._store is None:
            self._store = state.open_store(self.qp, "rate_limit", redis=self.opts.get("redis") or None,
                                           db_dir=self.opts.get("db_dir") or None,
                                           own_dir="/var/lib/qpsmtpd/rate_limit", timeout=self.opts.get("timeout"))
        return self._store

    def client(self) -> str:
        return client_network(self.connection.remote_ip, self.opts["network"], self.opts["network6"])

    def client_limited(self) -> bool:
        """Relay clients and whitelisted hosts are not limited as clients."""
        return not self.is_immune()

    # -- counting ------------------------------------------------------------------------
    def over_limit(self, name: str, who: str) -> str | None:
        """Count one event for `who` under limit `name`; a log text when the limit is passed."""
        limit, period = self.limits[name]
        window = int(state.clock() // period)
        count = self.store().incr(f"{name}:{who}:{period}:{window}", 1, period + 60)
        if count <= limit:
            return None
        return f"{who} {name} {count}/{limit} in {describe_period(period)}"

    def refuse(self, log_text: str, reply: Reply) -> Any:
        if not self.opts["reject"]:
            self.log(LOGINFO, f"fail, tolerated (reject 0), {log_text}")
            return DECLINED
        self.log(LOGINFO, f"fail, {log_text}")
        return reply

    def store_failed(self, error: state.StateError) -> Any:
        self.log(LOGERROR, f"rate_limit store unusable: {error}; not limiting")
        return DECLINED

    # -- hooks ------------------------------------------------------------------------------
    def connect_handler(self, transaction: Any) -> Any:
        if not self.client_limited():
            return DECLINED
        client = self.client()
        try:
            maximum = self.opts.get("concurrency")
            if maximum:
                member = f"{os.uname().nodename}:{self.connection.id}:{self.connection.remote_port}"
                self._slot = (f"concurrency:{client}", member)
                open_now = self.store().slot_acquire(*self._slot, float(self.opts["slot_ttl"]))
                if open_now > maximum:
                    return self.refuse(f"{client} concurrency {open_now}/{maximum}", Reply(
                        421, "Too many concurrent connections from your address, try again later", esc="4.7.0"))
            if "connect" in self.limits:
                over = self.over_limit("connect", client)
                if over:
                    return self.refuse(over, Reply(
                        421, "Too many connections from your address, try again later", esc="4.7.0"))
        except state.StateError as error:
            return self.store_failed(error)
        return DECLINED

    def release_slot(self, transaction: Any) -> Any:
        if self._slot is None:
            return DECLINED
        slot, self._slot = self._slot, None
        try:
            self.store().slot_release(*slot)
        except state.StateError as error:
            self.log(LOGERROR, f"rate_limit store unusable: {error}; the concurrency slot expires by itself")
        return DECLINED

    def mail_handler(self, transaction: Any, sender: Any, params: Any = None) -> Any:
        try:
            if self._slot is not None:  # a long session keeps its slot
                self.store().slot_acquire(*self._slot, float(self.opts["slot_ttl"]))
            if "mail" in self.limits and self.client_limited():
                over = self.over_limit("mail", self.client())
                if over:
                    return self.refuse(over, Reply(451, "Too many messages from your address, slow down",
                                                   esc="4.7.1"))
        except state.StateError as error:
            return self.store_failed(error)
        return DECLINED

    def rcpt_handler(self, transaction: Any, recipient: Any, params: Any = None) -> Any:
        try:
            if "user" in self.limits and self.qp.authenticated() and self.auth_user:
                over = self.over_limit("user", self.auth_user.lower())
                if over:
                    return self.refuse(over, Reply(
                        450, f"Too many recipients for user {self.auth_user}, slow down", esc="4.7.1"))
            if not self.client_limited():
                return DECLINED
            if "rcpt" in self.limits:
                over = self.over_limit("rcpt", self.client())
                if over:
                    return self.refuse(over, Reply(450, "Too many recipients from your address, slow down",
                                                   esc="4.7.1"))
            if "sender" in self.limits:
                sender = transaction.sender
                address = sender.address.lower() if sender is not None and sender.address else "<>"
                over = self.over_limit("sender", address)
                if over:
                    return self.refuse(over, Reply(
                        450, f"Too many recipients for sender <{address.strip('<>')}>, slow down", esc="4.7.1"))
            if "recipient" in self.limits and recipient is not None:
                address = recipient.address.lower()
                over = self.over_limit("recipient", address)
                if over:
                    return self.refuse(over, Reply(450, f"Too much mail for <{address}>, try again later",
                                                   esc="4.7.1"))
        except state.StateError as error:
            return self.store_failed(error)
        return DECLINED
