"""# virus/klez_filter — refuse the Klez worm

Klez mails are big and carry a Windows executable declared as audio or
application content.  For messages of 60000 bytes and more, the first 41
body lines are scanned: a `Content-Type:` line naming `audio` or
`application`, followed by a line starting with the base64 of a DOS/PE
header (`TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQA`), gets

    552 Klez Virus Detected

## Arguments

None.
"""

from qpsmtpd.constants import DENY, DECLINED, LOGINFO
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


SIGNATURE = b"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQA"


def hook_data_post(self, transaction):
    if transaction.data_size() < 60000:
        return DECLINED
    import re  # only for messages big enough to carry Klez

    content_type = re.compile(rb"^Content-type:.*(?:audio|application)", re.IGNORECASE)
    transaction.body_resetpos()
    seen_signature = False
    for _ in range(41):
        line = transaction.body_getline()
        if not line:
            break
        if content_type.search(line):
            seen_signature = True
            continue
        if seen_signature and line.startswith(SIGNATURE):
            self.log(LOGINFO, "fail, Klez signature found")
            return DENY, "Klez Virus Detected"
    return DECLINED
