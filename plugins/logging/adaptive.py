"""logging/adaptive - log rejected mail in detail, accepted mail briefly

Writes to stderr, like `logging/warn`, but at two levels:

- every line at or below the `reject` level is written at once
  (`<pid> (<hook>) <plugin>: <message>`), so a rejected message is logged in
  detail;
- lines at or below the `accept` level are also kept, and when a
  transaction whose MAIL FROM was accepted ends without anything having
  been denied in it, they are written again with the `prefix` character after the pid:
  ``<pid>` (<hook>) <plugin>: <message>``.

With multilog the two kinds can go to different directories:

    exec multilog t '-*` *' ./detailed '-*' '+*` *' ./accepted

## Arguments

    logging/adaptive [accept LEVEL] [reject LEVEL] [prefix CHAR]

- `accept LEVEL` - level of the summary lines of accepted transactions
  (`0`-`7`, `LOGERROR`, ...); default LOGERROR.
- `reject LEVEL` - level of the lines written at once; default LOGWARN.
- `prefix CHAR` - marks the summary lines; default `` ` ``.

Bad levels or an odd number of words stop the plugin from loading.

## Notes

A DENY of any hook (a refused recipient, for instance) marks the
transaction as denied; the mark is cleared for each new transaction.
Nothing is written when stderr is the client's socket (xinetd).
"""

import os

from qpsmtpd.logline import line_prefix, parse_level, write_stderr
from qpsmtpd.constants import DECLINED, LOGERROR, LOGWARN, LOGINFO
from qpsmtpd.args import Arguments, Option

arguments = Arguments(  # values are checked by the plugin: a bad one refuses loading
    Option("accept", help="level of the summary lines of accepted transactions"),
    Option("reject", help="level of the lines written at once"),
    Option("prefix", help="marks the summary lines"),
)


def register(self, qp, *args):
    if len(args) % 2:
        raise ValueError("logging/adaptive: arguments must be `name value` pairs")
    options = {args[i].lower(): args[i + 1] for i in range(0, len(args), 2)}
    unknown = set(options) - {"accept", "reject", "prefix"}
    if unknown:
        raise ValueError(f"logging/adaptive: unknown option(s) {', '.join(sorted(unknown))}")
    self.accept_level = parse_level(options["accept"]) if "accept" in options else LOGERROR
    self.reject_level = parse_level(options["reject"]) if "reject" in options else LOGWARN
    self.prefix = options.get("prefix", "`")
    self.kept = []
    self.kept_for = None
    self.denied_in = None
    self.log(LOGINFO, "Initializing logging::adaptive plugin")


def hook_logging(self, transaction, trace, hook, plugin, message):
    if plugin is not None and plugin == self.plugin_name:
        return DECLINED
    if trace > self.reject_level:
        return DECLINED
    self._write("", hook, plugin, message)
    if trace <= self.accept_level:
        if transaction is not self.kept_for:
            self.kept, self.kept_for = [], transaction
        self.kept.append((hook, plugin, message))
    return DECLINED


def hook_deny(self, transaction, plugin_name, code, text):
    self.denied_in = transaction
    return DECLINED


def hook_reset_transaction(self, transaction):
    accepted = transaction.sender is not None and transaction is not self.denied_in
    if transaction is self.kept_for and accepted:
        for hook, plugin, message in self.kept:
            self._write(self.prefix, hook, plugin, message)
    self.kept, self.kept_for, self.denied_in = [], None, None
    return DECLINED


def _write(self, mark, hook, plugin, message):
    if self.qp.stderr_logging_allowed():
        write_stderr(f"{os.getpid()}{mark}{line_prefix(hook, plugin)} {message}")
