"""qpsmtpd for Python: an extensible SMTP engine run once per connection.

The package is split by responsibility: `constants` (return codes, log
levels), `config` (config files, qmail control files, cdb maps), `address`
and `command` (parsing), `header` and `transaction` (the message),
`connection`, `plugin` (loading plugins and running hooks), `smtp` (the
state machine), `reader` (line reader with limits, timeouts and TLS) and
`session` (process set-up: file descriptors, connection info, logging).
"""

__version__ = "1.0.0"
