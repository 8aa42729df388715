"""# message_limits — the example plugin of docs/writing-plugins.md

Limits the recipients of one message and refuses messages whose Subject
holds a blocked word; logs what happened to every queued message.

## Arguments

* `max_rcpts N` — recipients per message (default 50); the next one gets
  `452 4.5.3 Too many recipients, send the rest later` (or, with
  `over_limit perm`, `550 Too many recipients`);
* `blocked_words WORD,WORD` — Subject words that refuse the message at the
  end of DATA (`552 Message refused: subject`);
* `loglevel N`.

## Example

    message_limits max_rcpts 20 blocked_words lottery,winner
"""

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, DENY, LOGINFO, LOGWARN
from qpsmtpd.plugin import Plugin, PluginTimeout
from qpsmtpd.replies import Reply


class MessageLimits(Plugin):
    arguments = Arguments(
        Option("max_rcpts", kind="int", default=50, minimum=1, help="recipients per message"),
        Option("over_limit", default="temp", choices=("temp", "perm"), help="the reply past max_rcpts"),
        Option("blocked_words", kind="list", help="Subject words that refuse the message"),
    )

    def init(self, qp, *args):
        # self.opts holds typed values: an int, a word of `choices`, a list
        self.blocked = [word.lower() for word in self.opts["blocked_words"]]

    def hook_rcpt(self, transaction, recipient, params=None):
        if len(transaction.recipients) < self.opts["max_rcpts"]:
            return DECLINED                      # let the next plugin (rcpt_ok ...) decide
        self.log(LOGINFO, f"fail, {recipient.format()} is over the limit")
        if self.opts["over_limit"] == "perm":
            return DENY, "Too many recipients"   # a qpsmtpd code: 550 here
        return Reply(452, "Too many recipients, send the rest later", esc="4.5.3")

    def hook_data_post(self, transaction):
        subject = (transaction.header.get("Subject") or "").lower()
        try:
            found = [word for word in self.blocked if word in subject]
        except PluginTimeout:
            # past config/plugin_timeout the engine raises this inside the hook:
            # clean up, log, and let it go on (the client gets 451)
            self.log(LOGWARN, "subject check timed out")
            raise
        if found:
            return DENY, "Message refused: subject"   # 552 at the end of DATA
        return DECLINED

    def hook_queue_post(self, transaction):
        outcome = transaction.notes["queue_result"]  # set before queue_post runs
        self.log(LOGINFO, f"queued={outcome['queued']} by {outcome['plugin']}: {outcome['code']} "
                          f"{outcome['text']} ({len(transaction.recipients)} recipients)")
        return DECLINED
