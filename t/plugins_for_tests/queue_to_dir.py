"""Test plugin: `queue_to_dir DIR` stores each message as DIR/<n>.msg plus DIR/<n>.env (JSON)."""

import json
import os


def hook_queue(self, transaction):
    directory = self.args[0]
    number = len([name for name in os.listdir(directory) if name.endswith(".env")]) + 1
    with open(os.path.join(directory, f"{number}.msg"), "wb") as handle:
        for block in transaction.iter_message():
            handle.write(block)
    with open(os.path.join(directory, f"{number}.env"), "w") as handle:
        json.dump({"sender": transaction.sender.address,
                   "recipients": [rcpt.address for rcpt in transaction.recipients]}, handle)
    return OK, f"Queued as {number}"


def hook_post_connection(self, transaction):
    self.log(LOGWARN, "post-connection ran")
