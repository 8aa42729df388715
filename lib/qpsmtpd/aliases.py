"""Old plugin names of the Perl qpsmtpd, and what they load here.

A `config/plugins` line naming an old plugin (`check_relay`,
`check_earlytalker action log`, `require_resolvable_fromhost`, ...) loads
the current plugin with the arguments translated, and logs once, at
LOGNOTICE, which plugin that is.  The loader asks this table only when no
Python file of the old name exists in a plugin dir, so an admin's own
plugin of that name always wins.  docs/migration.md lists every name.

Also here: Perl plugins that have no Python version and the reason, for
the load error of a Perl file found in `plugin_dirs`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Callable
    Translate = Callable[[list[str], "ConfigReader"], list[str]]
    ConfigReader = Callable[[str], list[str]]


class Alias:
    """An old plugin name: the plugin it loads and how its arguments change."""

    __slots__ = ("old", "target", "translate", "why")

    def __init__(self, old: str, target: str, translate: Translate | None = None, why: str = "") -> None:
        self.old = old
        self.target = target
        self.translate = translate
        self.why = why

    def arguments(self, args: list[str], config: ConfigReader) -> list[str]:
        return self.translate(list(args), config) if self.translate else list(args)

    def notice(self, args: list[str], new_args: list[str]) -> str:
        line = " ".join([self.target, *new_args])
        text = f"plugin {self.old} is the old name of {self.target}: loaded as '{line}'"
        if self.why:
            text += f" ({self.why})"
        return text + "; rename it in config/plugins (docs/migration.md)"


def _basicheaders(args: list[str], config: ConfigReader) -> list[str]:
    """`check_basicheaders N` / `days N`: N days in the past and in the future."""
    if len(args) == 1:
        args = ["days", args[0]]
    pairs = dict(zip(args[0::2], args[1::2])) if len(args) % 2 == 0 else {}
    days = pairs.pop("days", None)
    if days is None:
        return args
    pairs.setdefault("future", days)
    pairs.setdefault("past", days)
    return [word for pair in pairs.items() for word in pair]


def _require_resolvable(args: list[str], config: ConfigReader) -> list[str]:
    """Before 0.94 the check ran only when `config/require_resolvable_fromhost` said so."""
    if args:
        return args
    flag = config("require_resolvable_fromhost")
    if flag and flag[0].strip() == "0":
        return ["reject", "0"]
    return args


def _relay_only(args: list[str], config: ConfigReader) -> list[str]:
    return ["only", "1", *args]


ALIASES: dict[str, Alias] = {alias.old: alias for alias in (
    Alias("check_earlytalker", "earlytalker"),
    Alias("check_relay", "relay"),
    Alias("check_norelay", "relay", why="relay reads config/norelayclients too"),
    Alias("relay_only", "relay", _relay_only),
    Alias("require_resolvable_fromhost", "resolvable_fromhost", _require_resolvable),
    Alias("check_badmailfrom", "badmailfrom"),
    Alias("check_badmailfromto", "badmailfromto"),
    Alias("check_badrcptto", "badrcptto"),
    Alias("check_spamhelo", "helo", why="config/badhelo is read by helo"),
    Alias("check_loop", "loop"),
    Alias("check_basicheaders", "headers", _basicheaders),
    Alias("check_bogus_bounce", "bogus_bounce"),
    Alias("check_qmail_deliverable", "qmail_deliverable"),
    Alias("klez_filter", "virus/klez_filter"),
    Alias("clamav", "virus/clamav"),
    Alias("rcpt_regex", "rcpt_regexp"),
    # the async server's copies (qpsmtpd-async, removed in 0.96)
    Alias("async/check_earlytalker", "earlytalker"),
    Alias("async/earlytalker", "earlytalker"),
    Alias("async/dns_whitelist_soft", "dns_whitelist_soft"),
    Alias("async/dnsbl", "dnsbl"),
    Alias("async/rhsbl", "rhsbl"),
    Alias("async/uribl", "uribl"),
    Alias("async/resolvable_fromhost", "resolvable_fromhost"),
    Alias("async/require_resolvable_fromhost", "resolvable_fromhost", _require_resolvable),
    Alias("async/queue/smtp-forward", "queue/smtp-forward"),
)}

# Perl plugins with no Python version, and why (the load error names it).
NOT_PORTED: dict[str, str] = {
    "domainkeys": "DomainKeys was superseded by DKIM: use dkim",
    "dspam": "Debian no longer packages DSPAM",
    "virus/aveclient": "Avira's AntiVir engine for Linux servers is discontinued",
    "virus/bitdefender": "BitDefender's bdc command-line scanner is discontinued",
    "virus/hbedv": "H+BEDV AntiVir for Linux is discontinued",
    "virus/kavscanner": "Kaspersky's kavscanner is discontinued",
    "virus/sophie": "Sophie (the Sophos SAVI daemon) is discontinued",
    "virus/uvscan": "McAfee's uvscan for Linux is discontinued",
    "logging/apache": "it logged through Apache's mod_perl server, which does not exist here",
    "karma_tool": "a command-line tool, not a plugin: tools/karma_tool.py",
    "tls_cert": "a command-line tool, not a plugin: tools/tls_cert.py",
    "auth/auth_vpopmail": "needs vpopmail's Perl module in-process: use auth/auth_vpopmaild",
    "spf_deny": "replaced by sender_permitted_from",
    "check_for_hi_virus": "a 2004 virus; use a virus scanner plugin",
    "virus/check_for_hi_virus": "a 2004 virus; use a virus scanner plugin",
    "saslauth": "replaced by the auth/ plugins",
    "authnull": "an insecure example (accepted every password)",
    "auth/authnull": "an insecure example (accepted every password)",
    "bounce_verp": "removed from the Perl qpsmtpd in 2005",
    "skip_plugins": "removed from the Perl qpsmtpd",
    "config/cdb": "cdb maps are read by the engine (name.cdb)",
}


def lookup(name: str) -> Alias | None:
    return ALIASES.get(name)
