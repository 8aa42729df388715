"""Test helper: copies transaction notes into an X-Test-Notes header (JSON) at data_post.

    notes_to_header rspamd spam quarantine      # the note names to copy
"""
import json

from qpsmtpd.constants import DECLINED


def hook_data_post(self, transaction):
    wanted = {name: transaction.notes.get(name) for name in self.args}
    transaction.header.add("X-Test-Notes", json.dumps(wanted, sort_keys=True, default=str))
    return DECLINED
