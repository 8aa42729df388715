"""Argument options shared by the policy plugins: `reject` and `reject_type`.

    from qpsmtpd.args import Arguments
    from qpsmtpd.policy_args import reject_option, reject_type_option

    arguments = Arguments(reject_option(default=1), reject_type_option(default="perm"))

`reject` is a number (`0` only logs, any other number rejects), `naughty`
(leave the rejection to the `naughty` plugin) or a rejection type word
(`temp`, `perm`, `disconnect` ...: reject with that type).  `reject_type` is
one of `perm`/`hard`, `temp`/`soft`, `disconnect`, `temp_disconnect`.  See
`PolicyMixin.get_reject` for how a plugin uses them.
"""

from __future__ import annotations

from .args import Option
from .policy import REJECT_TYPES

REJECT_TYPE_WORDS = tuple(REJECT_TYPES)
REJECT_WORDS = ("naughty", *REJECT_TYPE_WORDS)


def reject_option(default: int | str | None = 1, **extra: object) -> Option:
    """`reject 0|1|naughty|<type>` (a whole number: 0 logs only, others reject)."""
    return Option("reject", kind="int", default=default, choices=REJECT_WORDS, minimum=0,
                  help="0 logs only, 1 rejects, naughty defers to the naughty plugin", **extra)  # type: ignore[arg-type]


def reject_type_option(default: str | None = None) -> Option:
    """`reject_type perm|hard|temp|soft|disconnect|temp_disconnect`."""
    return Option("reject_type", default=default, choices=REJECT_TYPE_WORDS,
                  help="the code a rejection gets: perm, temp, disconnect, temp_disconnect")
