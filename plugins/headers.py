"""# headers — check the message header

At the end of DATA the header is checked:

* every required header (default: `From`) is present and not empty:
  `We require a valid From header`;
* none of the singular headers appears more than once — `Date From Sender
  Reply-To To Cc Bcc Message-Id In-Reply-To References Subject`:
  `Only one Date header allowed. See RFC 5322, Section 3.6`;
* when `past`/`future` are given and the Date header can be parsed, the date
  is not older than `past` days (`The Date header is too far in the past`)
  nor more than `future` days ahead (`The Date header is too far in the future`);
* a message without any data: `You must send some data first`.

A failing message is refused with `552` and one line per problem found, for
example

    552 We require a valid From header

Relay clients and whitelisted hosts/senders are not checked.  Each problem
costs the connection 1 karma.  The result describes this message only: the
next message of the connection is judged on its own.

## Arguments

* `require From,Date,...` — comma-separated list of required headers
  (default `From`; requiring `Date` loses some legitimate mail);
* `future N`, `past N` — days; not checked when not given;
* `reject 1` (default) | `0` | `naughty`;
* `reject_type perm` (default) | `temp` | `disconnect` | `temp_disconnect`;
* `loglevel N`.

## Example

    headers require From,Date future 2 past 15
"""

from qpsmtpd.constants import DECLINED, LOGWARN, LOGINFO
from qpsmtpd.args import Arguments, Option
from qpsmtpd.policy_args import reject_option, reject_type_option

arguments = Arguments(
    Option("require", kind="list", help="headers a message must have (default From)"),
    Option("future", kind="float", minimum=0, help="days a Date header may be ahead"),
    Option("past", kind="float", minimum=0, help="days a Date header may be behind"),
    reject_option(default=1), reject_type_option(default="perm"),
)


SINGULAR_HEADERS = ("Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc",
                    "Message-Id", "In-Reply-To", "References", "Subject")


def register(self, qp, *args):
    if len(args) % 2:
        self.log(LOGWARN, "invalid arguments")
    self.required_headers = [name.strip() for name in self.opts["require"] if name.strip()] or ["From"]


def hook_data_post(self, transaction):
    if transaction.data_size() == 0:
        return self.get_reject("You must send some data first", "no data")
    header = transaction.header
    if header is None:
        return self.get_reject("Headers are missing", "missing headers")
    if self.is_immune():
        return DECLINED
    date_error = self.invalid_date_range()
    if date_error:
        return self.get_reject(date_error, date_error)
    errors = self.missing_required_headers(header) + self.repeated_singular_headers(header)
    if errors:
        return self.get_reject("\n".join(errors), "RFC 5322 validation errors")
    self.log(LOGINFO, "pass")
    return DECLINED


def missing_required_headers(self, header):
    errors = []
    for name in self.required_headers:
        value = header.get(name)
        if value is not None and value.strip():
            continue
        self.adjust_karma(-1)
        self.log(LOGINFO, f"fail, no {name} header")
        errors.append(f"We require a valid {name} header")
    return errors


def repeated_singular_headers(self, header):
    errors = []
    for name in SINGULAR_HEADERS:
        if header.count(name) < 2:
            continue
        self.adjust_karma(-1)
        self.log(LOGINFO, f"fail, too many {name} headers")
        errors.append(f"Only one {name} header allowed. See RFC 5322, Section 3.6")
    return errors


def invalid_date_range(self, date=None):
    past, future = self.days("past"), self.days("future")
    header = self.transaction.header
    if not (past or future) or header is None:
        return None
    date = date or header.get("Date")
    if not date:
        return None
    import time
    from email._parseaddr import mktime_tz, parsedate_tz  # email.utils would also import socket, random...

    parsed = parsedate_tz(date.strip())
    if parsed is None:
        self.log(LOGINFO, f"skip, date not parseable ({date.strip()})")
        return None
    if parsed[9] is None:
        parsed = parsed[:9] + (0,)
    message_time = mktime_tz(parsed)
    if past and message_time < time.time() - past * 86400:
        self.log(LOGINFO, f"fail, date too old ({date.strip()})")
        self.adjust_karma(-1)
        return "The Date header is too far in the past"
    if future and message_time > time.time() + future * 86400:
        self.log(LOGINFO, f"fail, date in future ({date.strip()})")
        self.adjust_karma(-1)
        return "The Date header is too far in the future"
    return None


def days(self, name):
    return self.opts[name] or 0
