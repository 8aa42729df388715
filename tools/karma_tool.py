#!/usr/bin/python3
"""karma_tool — look at and change the karma plugin's history.

    tools/karma_tool.py list                       # every IP with its record, then totals
    tools/karma_tool.py search naughty|nice|both   # IPs with naughty / nice / both kinds of connections
    tools/karma_tool.py search 192.0.2.7           # one IP
    tools/karma_tool.py capture 192.0.2.7          # into the penalty box now
    tools/karma_tool.py release 192.0.2.7          # out of the penalty box (naughty count cleared)
    tools/karma_tool.py prune [DAYS]               # drop expired records and penalties older than DAYS (7)

The store is the one the `karma` line of config/plugins names (its
`db_dir` / `redis` arguments, else `config/state_redis`, else the default
directories), found the way qpsmtpd.py finds its config (`QPSMTPD_CONFIG`,
then `<install>/config`).  `--db-dir DIR` or `--redis HOST[:PORT]` name
a store directly.  Run it as the user the server runs as; run as root it
takes on the owner of the local store file, so the server can still open
it afterwards.  Exit status: 0, 1 when the store is unusable, 2 for a
usage error.
"""

from __future__ import annotations

import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lib"))
sys.path.insert(0, os.path.join(REPO, "plugins"))

from qpsmtpd import state  # noqa: E402
from qpsmtpd.config import Config  # noqa: E402
from karma import format_record, parse_record  # noqa: E402  (plugins/karma.py: the record layout)

DAY = 86400.0
HEADER = f"{'IP address':<40} {'penalty box since':<20} {'naughty':>7} {'nice':>5} {'connects':>8}"


class ToolConfig:
    """What state.open_store needs from a session: config lookups and the install dir."""

    def __init__(self, install_dir: str) -> None:
        self.install_dir = install_dir
        self.conf = Config(install_dir)

    def config(self, name: str) -> list[str]:
        return self.conf.get(name)

    def config_value(self, name: str, default: str | None = None) -> str | None:
        values = self.conf.get(name)
        return values[0] if values else default


def karma_options(qp: ToolConfig) -> dict[str, str]:
    """`db_dir`, `redis`, `timeout` from the karma line of config/plugins."""
    for line in qp.config("plugins"):
        words = line.split()
        if words and words[0].split(":")[0] == "karma":
            args = words[1:]
            return {args[i]: args[i + 1] for i in range(0, len(args) - 1, 2)}
    return {}


def show(ip: str, value: str) -> tuple[int, int, int]:
    penalty_start, naughty, nice, connects = parse_record(value)
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(penalty_start)) if penalty_start else ""
    print(f"{ip:<40} {since:<20} {naughty:>7} {nice:>5} {connects:>8}")
    return naughty, nice, connects


def is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def take_on_store_owner(store: state.Store) -> None:
    """As root, act as the owner of the SQLite file (its -wal/-shm files must stay the server's)."""
    if os.geteuid() != 0 or not isinstance(store, state.LocalStore) or not os.path.exists(store.path):
        return
    owner = os.stat(store.path)
    if owner.st_uid != 0:
        os.setegid(owner.st_gid)
        os.seteuid(owner.st_uid)


def command_list(store: state.Store, search: str | None) -> int:
    totals = {"naughty": 0, "nice": 0, "connects": 0}
    print(HEADER)
    for ip, value in sorted(store.items()):
        _penalty, naughty, nice, _connects = parse_record(value)
        if search == "naughty" and not naughty or search == "nice" and not nice:
            continue
        if search == "both" and not (naughty and nice):
            continue
        if search not in (None, "naughty", "nice", "both") and ip != search:
            continue
        for name, number in zip(("naughty", "nice", "connects"), show(ip, value)):
            totals[name] += number
    print(f"totals: {totals['naughty']} naughty, {totals['nice']} nice, {totals['connects']} connects")
    return 0


def command_capture(store: state.Store, ip: str, keep: float) -> int:
    def capture(value: str | None) -> tuple[str, None]:
        _penalty, naughty, nice, connects = parse_record(value)
        return format_record(state.clock(), naughty + 1, nice, connects), None
    store.update(ip, capture, keep)
    print(f"{ip} is in the penalty box")
    return 0


def command_release(store: state.Store, ip: str, keep: float) -> int:
    def release(value: str | None) -> tuple[str | None, bool]:
        if value is None:
            return None, False
        _penalty, _naughty, nice, connects = parse_record(value)
        return format_record(0, 0, nice, connects), True
    found = store.update(ip, release, keep)
    print(f"{ip} released" if found else f"{ip} has no karma record")
    return 0


def command_prune(store: state.Store, days: float, keep: float) -> int:
    expired = store.prune()
    cutoff = state.clock() - days * DAY
    stale = [ip for ip, value in store.items() if 0 < parse_record(value)[0] < cutoff]
    for ip in stale:
        store.delete(ip)
    print(f"pruned {expired} expired records and {len(stale)} with a penalty older than {days:g} days")
    return 0


def main(argv: list[str]) -> int:
    options: dict[str, str] = {}
    words: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in ("--db-dir", "--redis", "--config") and index + 1 < len(argv):
            options[word[2:]] = argv[index + 1]
            index += 2
            continue
        if word in ("-h", "--help"):
            sys.stdout.write(__doc__ or "")
            return 0
        words.append(word)
        index += 1
    if not words or words[0] not in ("list", "search", "capture", "release", "prune"):
        sys.stderr.write(__doc__ or "")
        return 2
    if "config" in options:
        os.environ["QPSMTPD_CONFIG"] = options["config"]
    qp = ToolConfig(REPO)
    plugin_options = karma_options(qp)
    if "db-dir" in options or "redis" in options:
        plugin_options = {"db_dir": options.get("db-dir", ""), "redis": options.get("redis", "")}
    command, rest = words[0], words[1:]
    if command in ("capture", "release") and (not rest or not is_ip(rest[0])):
        sys.stderr.write(f"karma_tool: {command} needs an IP address\n")
        return 2
    try:
        timeout = float(plugin_options["timeout"]) if plugin_options.get("timeout") else 5.0
        store = state.open_store(qp, "karma", redis=plugin_options.get("redis") or None,
                                 db_dir=plugin_options.get("db_dir") or None, own_dir="/var/lib/qpsmtpd/karma",
                                 timeout=timeout)
        take_on_store_owner(store)
        print(f"using karma store: {store.describe()}", file=sys.stderr)
        keep = (float(plugin_options.get("history_days") or 60) + 8) * DAY
        if command == "list":
            return command_list(store, None)
        if command == "search":
            return command_list(store, rest[0] if rest else None)
        if command == "capture":
            return command_capture(store, rest[0], keep)
        if command == "release":
            return command_release(store, rest[0], keep)
        return command_prune(store, float(rest[0]) if rest else 7.0, keep)
    except state.StateError as error:
        sys.stderr.write(f"karma_tool: {error}\n")
        return 1
    except ValueError as error:
        sys.stderr.write(f"karma_tool: {error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
