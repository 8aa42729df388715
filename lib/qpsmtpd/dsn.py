"""Enhanced mail system status codes (RFC 3463) the way plugins return them.

    return dsn.relaying_denied()                       # (DENY, "Relaying denied (#5.7.1)")
    return dsn.relaying_denied("Not from {ip}")         # own text, same code
    return dsn.relaying_denied(DENYSOFT, "Try later")   # own return code -> class 4

Each helper takes an optional return code and an optional text and gives
`(code, "text (#class.subject.detail)")`, as qpsmtpd's `Qpsmtpd::DSN`.
"""

from __future__ import annotations


from .constants import DENY, DENYSOFT, DONE, OK, return_code

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Callable

RFC3463: list[list[str]] = [
    ["Other or Undefined Status"],
    ["Other address status.", "Bad destination mailbox address.", "Bad destination system address.",
     "Bad destination mailbox address syntax.", "Destination mailbox address ambiguous.",
     "Destination address valid.", "Destination mailbox has moved, No forwarding address.",
     "Bad sender's mailbox address syntax.", "Bad sender's system address."],
    ["Other or undefined mailbox status.", "Mailbox disabled, not accepting messages.", "Mailbox full.",
     "Message length exceeds administrative limit.", "Mailing list expansion problem."],
    ["Other or undefined mail system status.", "Mail system full.", "System not accepting network messages.",
     "System not capable of selected features.", "Message too big for system.",
     "System incorrectly configured."],
    ["Other or undefined network or routing status.", "No answer from host.", "Bad connection.",
     "Directory server failure.", "Unable to route.", "Mail system congestion.", "Routing loop detected.",
     "Delivery time expired."],
    ["Other or undefined protocol status.", "Invalid command.", "Syntax error.", "Too many recipients.",
     "Invalid command arguments.", "Wrong protocol version."],
    ["Other or undefined media error.", "Media not supported.", "Conversion required and prohibited.",
     "Conversion required but not supported.", "Conversion with loss performed.", "Conversion Failed."],
    ["Other or undefined security status.", "Delivery not authorized, message refused.",
     "Mailing list expansion prohibited.", "Security conversion required but not possible.",
     "Security features not supported.", "Cryptographic failure.",
     "Cryptographic algorithm not supported.", "Message integrity failure."],
]


def status_class(code: int) -> int:
    """2 for OK/DONE, 5 for DENY*, 4 for DENYSOFT* and anything else."""
    name = str(return_code(code) or "")
    if name.startswith("DENYSOFT"):
        return 4
    if name.startswith("DENY"):
        return 5
    if code in (OK, DONE):
        return 2
    return 4


def dsn(code: Any, reason: str | None, default_code: int, subject: int, detail: int,
        default_reason: str | None = None) -> tuple[int, str]:
    if code is None:
        code = default_code
    elif not isinstance(code, int):
        reason, code = str(code), default_code
    if subject >= len(RFC3463):
        subject, detail = 0, 0
    if detail >= len(RFC3463[subject]):
        detail = 0
    text = reason or default_reason or RFC3463[subject][detail]
    return code, f"{text} (#{status_class(code)}.{subject}.{detail})"


def _helper(default_code: int, subject: int, detail: int, default_reason: str | None = None
            ) -> Callable[..., tuple[int, str]]:
    def make(code: Any = None, reason: str | None = None) -> tuple[int, str]:
        return dsn(code, reason, default_code, subject, detail, default_reason)
    return make


unspecified = _helper(DENYSOFT, 0, 0)
addr_unspecified = _helper(DENYSOFT, 1, 0)
no_such_user = _helper(DENY, 1, 1, "No such user")
addr_bad_dest_mbox = _helper(DENY, 1, 1)
addr_bad_dest_system = _helper(DENY, 1, 2)
addr_bad_dest_syntax = _helper(DENY, 1, 3)
addr_dest_ambigous = _helper(DENYSOFT, 1, 4)
addr_rcpt_ok = _helper(OK, 1, 5)
addr_mbox_moved = _helper(DENY, 1, 6)
addr_bad_from_syntax = _helper(DENY, 1, 7)
addr_bad_from_system = _helper(DENY, 1, 8)
mbox_unspecified = _helper(DENYSOFT, 2, 0)
mbox_disabled = _helper(DENY, 2, 1)
mbox_full = _helper(DENYSOFT, 2, 2)
mbox_msg_too_long = _helper(DENY, 2, 3)
mbox_list_expansion_problem = _helper(DENYSOFT, 2, 4)
sys_unspecified = _helper(DENYSOFT, 3, 0)
sys_disk_full = _helper(DENYSOFT, 3, 1)
sys_not_accepting_mail = _helper(DENYSOFT, 3, 2)
sys_not_supported = _helper(DENYSOFT, 3, 3)
sys_msg_too_big = _helper(DENY, 3, 4)
net_unspecified = _helper(DENYSOFT, 4, 0)
temp_resolver_failed = _helper(DENYSOFT, 4, 3, "Temporary address resolution failure")
net_directory_server_failed = _helper(DENYSOFT, 4, 3)
net_system_congested = _helper(DENYSOFT, 4, 5)
net_routing_loop = _helper(DENY, 4, 6)
too_many_hops = _helper(DENY, 4, 6, "Too many hops")
proto_unspecified = _helper(DENYSOFT, 5, 0)
proto_invalid_command = _helper(DENY, 5, 1)
proto_syntax_error = _helper(DENY, 5, 2)
proto_rcpt_list_too_long = _helper(DENYSOFT, 5, 3)
too_many_rcpts = _helper(DENYSOFT, 5, 3)
proto_invalid_cmd_args = _helper(DENY, 5, 4)
proto_wrong_version = _helper(DENYSOFT, 5, 5)
media_unspecified = _helper(DENYSOFT, 6, 0)
media_unsupported = _helper(DENY, 6, 1)
media_conv_prohibited = _helper(DENY, 6, 2)
media_conv_unsupported = _helper(DENYSOFT, 6, 3)
media_conv_lossy = _helper(DENYSOFT, 6, 4)
sec_unspecified = _helper(DENYSOFT, 7, 0)
sec_sender_unauthorized = _helper(DENY, 7, 1)
bad_sender_ip = _helper(DENY, 7, 1, "Bad sender's IP")
relaying_denied = _helper(DENY, 7, 1, "Relaying denied")
sec_list_dest_prohibited = _helper(DENY, 7, 2)
sec_conv_failed = _helper(DENY, 7, 3)
sec_feature_unsupported = _helper(DENY, 7, 4)
sec_crypto_failure = _helper(DENY, 7, 5)
sec_crypto_algorithm_unsupported = _helper(DENYSOFT, 7, 6)
sec_msg_integrity_failure = _helper(DENY, 7, 7)
