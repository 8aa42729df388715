"""# karma — remember which clients were naughty and which were nice

Other plugins raise or lower a connection's karma while it runs
(`self.adjust_karma(n)`: dnsbl, helo, SPF, DKIM, earlytalker, spam and
virus scanners ...).  When the connection ends, `karma` records it for the
client's IP address: a connection with karma of `strikes` or more is
*nice*, one with `-strikes` or less is *naughty*.  A client whose naughty
connections outnumber its nice ones by `negative` goes to the **penalty
box** for `penalty_days`: its connections are refused

    550 You were naughty. You cannot connect for 0.99 more days.

A client that keeps being naughty without ever being nice (history below
-5 and no nice connection) gets one more day in the box for each point
of history below zero.

What other plugins can read (connection notes):

* `karma_history` — nice minus naughty connections of this IP so far (set
  at connect; `earlytalker` skips its delay above 5);
* `karma` — this connection's running total (0 at connect; a history
  above 10 starts it at 1).

At RCPT, a client with neither a good history nor good karma in this
connection may send a message to one recipient only (`550 too many
recipients for karma 0 (h: 0)` for the second).  At DATA and at the end
of DATA a connection whose karma fell below -4 is refused (`very bad
karma`).  An envelope address with a space after `FROM:`/`TO:` costs 2
karma, and `config/karma_tlds` adjusts karma by the sender's domain.
Relay clients and whitelisted hosts and senders are never refused (list
`relay`/`whitelist` before `karma`); their connections are still recorded.

The history lives in a store shared by every connection (a local SQLite
file `state.sqlite` in `db_dir`, or Redis: `redis`/`config/state_redis`,
see docs/multi-mx.md).  **When the store is down or locked** past
`timeout`, nobody is refused for karma and the connection is not
recorded; the log says `karma store unusable: ...`.

`tools/karma_tool.py` lists, searches, captures (puts in the box) and
releases IPs and prunes the store.

## Arguments

* `negative N` — how far below zero the history (nice - naughty) may go
  before a naughty connection sends the client to the box (default 1);
* `strikes N` — the karma that makes a connection nice or naughty
  (default 3);
* `penalty_days DAYS` — time in the box, fractions allowed (default 1);
* `reject 0|1|connect|naughty` — `naughty` (default): leave the refusal to
  the `naughty` plugin; `1` and `connect`: refuse at connect; `0`: only log;
* `reject_type disconnect` (default) | `perm` | `temp` | `temp_disconnect`;
* `db_dir PATH` — the local store's directory (default: the first
  writable of `/var/lib/qpsmtpd/karma`, `<qpsmtpd dir>/var/db`,
  `<qpsmtpd dir>/config`); it must be writable by the user qpsmtpd runs
  as (SQLite keeps `state.sqlite-wal` and `-shm` beside the file);
* `redis HOST[:PORT]` — keep the history in Redis (see greylisting);
* `timeout SECONDS` — the longest wait for the store (default 1);
* `history_days DAYS` — forget an IP this long after its last
  connection or the end of its penalty (default 60);
* `nfslock 1|0` — accepted for compatibility, without effect;
* `loglevel N`.

## Config files

* `karma_tlds` — `tld:adjustment` lines (`work:-4`, `fr:+1`): the karma
  change for an envelope sender in that top-level domain.

## Example

    relay
    whitelist
    karma penalty_days 1 negative 2 reject naughty
    earlytalker
    ...
    naughty reject rcpt

## Log

    (connect) karma: pass, no record
    (connect) karma: fail, 1 naughty, 0 nice, 3 connects
    (disconnect) karma: negative, sent to penalty box, (msg: -4, his: -1)
    (disconnect) karma: positive, (msg: 3, his: 2)
"""

from __future__ import annotations

from qpsmtpd import state
from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO
from qpsmtpd.plugin import Plugin

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DAY = 86400.0


def parse_record(value: str | None) -> tuple[float, int, int, int]:
    """`penalty_start:naughty:nice:connects` (the Perl plugin's layout) -> numbers (zeros when empty)."""
    fields = (value or "").split(":")
    fields += ["0"] * (4 - len(fields))
    try:
        return float(fields[0] or 0), int(fields[1] or 0), int(fields[2] or 0), int(fields[3] or 0)
    except ValueError:
        return 0.0, 0, 0, 0


def format_record(penalty_start: float, naughty: int, nice: int, connects: int) -> str:
    return f"{int(penalty_start)}:{naughty}:{nice}:{connects}"


class Karma(state.StoreUser, Plugin):
    arguments = Arguments(
        Option("negative", kind="int", default=1, minimum=1),
        Option("strikes", kind="int", default=3, minimum=1),
        Option("penalty_days", kind="float", default=1.0, minimum=0),
        Option("reject", default="naughty", choices=("0", "1", "connect", "naughty")),
        Option("reject_type", default="disconnect", choices=("perm", "temp", "disconnect", "temp_disconnect",
                                                             "soft", "hard")),
        Option("db_dir"), Option("redis"), Option("timeout", kind="float", minimum=0.01, maximum=60),
        Option("history_days", kind="float", default=60.0, minimum=1),
        Option("nfslock"),
    )

    def register(self, qp: Any, *args: str) -> None:
        self.prepare_store(qp, self.opts.get("redis"), self.opts.get("db_dir"))
        self._tlds: dict[str, int] | None = None
        self.register_hook("connect", "connect_handler")
        self.register_hook("mail", "from_handler")
        self.register_hook("rcpt", "rcpt_handler")
        self.register_hook("data", "data_handler")
        self.register_hook("data_post", "data_handler")
        self.register_hook("disconnect", "disconnect_handler")

    def store(self) -> state.Store:
        if self._store is None:
            self._store = open_karma_store(self.qp, self.opts)
        return self._store

    def store_failed(self, error: state.StateError, what: str) -> Any:
        self.log(LOGERROR, f"karma store unusable: {error}; {what}")
        return DECLINED

    # -- connect: the penalty box -----------------------------------------------------
    def connect_handler(self, transaction: Any) -> Any:
        notes = self.connection.notes
        notes["karma"] = 0
        if self.is_immune():
            return DECLINED
        ip = self.connection.remote_ip
        if not ip:
            self.log(LOGINFO, "skip, unable to get DB key")
            return DECLINED
        try:
            value = self.store().get(ip)
        except state.StateError as error:
            return self.store_failed(error, "not checking the penalty box")
        if not value:
            self.log(LOGINFO, "pass, no record")
            return DECLINED
        penalty_start, naughty, nice, connects = parse_record(value)
        summary = f"{naughty} naughty, {nice} nice, {connects} connects"
        history = self.note_history(naughty, nice)
        if not penalty_start:
            self.log(LOGINFO, f"pass, no penalty ({summary})")
            return DECLINED
        days_old = (state.clock() - penalty_start) / DAY
        penalty_days = self.opts["penalty_days"]
        if days_old >= penalty_days:
            self.log(LOGINFO, f"pass, penalty expired ({summary})")
            return DECLINED
        self.count_refused_connection(ip)
        self.log(LOGINFO, f"fail, {summary}")
        left = f"{penalty_days - days_old:.2f}"
        return self.get_reject(f"You were naughty. You cannot connect for {left} more days.", str(history))

    def note_history(self, naughty: int, nice: int) -> int:
        if not naughty and not nice:
            return 0
        history = nice - naughty
        self.connection.notes["karma_history"] = history
        if history > 10:
            self.adjust_karma(1)
        return history

    def count_refused_connection(self, ip: str) -> None:
        def add_connect(value: str | None) -> tuple[str | None, None]:
            if value is None:
                return None, None
            penalty_start, naughty, nice, connects = parse_record(value)
            return format_record(penalty_start, naughty, nice, connects + 1), None
        try:
            self.store().update(ip, add_connect, self.keep_seconds())
        except state.StateError as error:
            self.store_failed(error, "connection not counted")

    def get_reject(self, smtp_mess: str | None = None, log_mess: str | None = None) -> Any:
        if str(self.opts.get("reject")) == "connect":  # `connect` is `1` at the only hook that refuses
            self.opts["reject"] = "1"
            try:
                return super().get_reject(smtp_mess, log_mess)
            finally:
                self.opts["reject"] = "connect"
        return super().get_reject(smtp_mess, log_mess)

    # -- during the session ------------------------------------------------------------
    def from_handler(self, transaction: Any, sender: Any, params: Any = None) -> Any:
        self.illegal_envelope_format(self.connection.notes.get("envelope_from"))
        tlds = self.karma_tlds()
        host = (getattr(sender, "host", "") or "").lower()
        for tld, score in tlds.items():
            if score and host.endswith("." + tld):
                self.log(LOGINFO, f"adjusting karma for .{tld} envelope sender")
                self.adjust_karma(score)
        return DECLINED

    def karma_tlds(self) -> dict[str, int]:
        if self._tlds is None:
            self._tlds = {}
            for line in self.qp.config("karma_tlds"):
                tld, _colon, score = line.strip().partition(":")
                try:
                    self._tlds[tld.strip().lower().lstrip(".")] = int(score.strip())
                except ValueError:
                    self.log(LOGERROR, f"karma_tlds: ignoring line {line!r} (want tld:number)")
            if not self._tlds:
                self.log(LOGDEBUG, "no specific karma for tlds defined")
        return self._tlds

    def illegal_envelope_format(self, line: Any) -> None:
        text = str(line or "").upper()
        if not (text.startswith("FROM:<") or text.startswith("TO:<")):
            self.log(LOGINFO, f"illegal envelope address format: {line}")
            self.adjust_karma(-2)

    def rcpt_handler(self, transaction: Any, recipient: Any, params: Any = None) -> Any:
        notes = self.connection.notes
        self.illegal_envelope_format(notes.get("envelope_rcpt"))
        count = (notes.get("recipient_count") or 0) + 1
        if count > 1:
            self.log(LOGINFO, f"recipients c: {count} ({recipient})")
            notes["recipient_count"] = count
        if self.is_immune():
            return DECLINED
        recipients = len(transaction.recipients)
        if not recipients:
            self.log(LOGDEBUG, "info, no recipient count")
            return DECLINED
        self.log(LOGINFO, f"recipients t: {recipients} ({recipient})")
        history = notes.get("karma_history") or 0
        if history > 0:
            self.log(LOGINFO, "info, good history")
            return DECLINED
        karma = notes.get("karma") or 0
        if karma > 0:
            self.log(LOGINFO, "info, good connection")
            return DECLINED
        return DENY, f"too many recipients for karma {karma} (h: {history})"

    def data_handler(self, transaction: Any) -> Any:
        if self.is_immune() or self.is_naughty():
            return DECLINED
        karma = self.connection.notes.get("karma") or 0
        if karma < -4:
            return self.get_reject(f"very bad karma: {karma}")
        return DECLINED

    # -- disconnect: record the connection ---------------------------------------------
    def disconnect_handler(self, transaction: Any) -> Any:
        karma = self.connection.notes.get("karma")
        if not karma:
            self.log(LOGDEBUG, "no karma")
            return DECLINED
        ip = self.connection.remote_ip
        if not ip:
            return DECLINED
        try:
            log_text = self.store().update(ip, lambda value: self.record(value, karma), self.keep_seconds())
        except state.StateError as error:
            return self.store_failed(error, "connection not recorded")
        self.log(LOGINFO, log_text)
        return DECLINED

    def record(self, value: str | None, karma: int) -> tuple[str, str]:
        """The client's record after this connection, and the log line."""
        penalty_start, naughty, nice, connects = parse_record(value)
        history = nice - naughty
        strikes = self.opts["strikes"]
        if karma <= -strikes:
            naughty += 1  # the Perl plugin forgot this, so `negative 2` never penalised anyone
            history -= 1
            verdict = "negative"
            if history <= -self.opts["negative"]:
                now = state.clock()
                if nice == 0 and history < -5:
                    verdict += ", sent to penalty box, penalty box bonus!"
                    penalty_start = now + abs(history) * DAY
                else:
                    verdict += ", sent to penalty box"
                    penalty_start = now
        elif karma >= strikes:
            nice += 1
            verdict = "positive"
        else:
            verdict = "neutral"
        record = format_record(penalty_start, naughty, nice, connects + 1)
        return record, f"{verdict}, (msg: {karma}, his: {history})"

    def keep_seconds(self) -> float:
        return (self.opts["history_days"] + self.opts["penalty_days"]) * DAY + 7 * DAY


def open_karma_store(qp: Any, opts: dict[str, Any]) -> state.Store:
    """The karma store of a plugin line's options (also used by tools/karma_tool.py)."""
    return state.open_store(qp, "karma", redis=opts.get("redis") or None, db_dir=opts.get("db_dir") or None,
                            own_dir="/var/lib/qpsmtpd/karma", timeout=opts.get("timeout"))
