#!/bin/sh
# Create and run a private Postfix instance for tests: qmqpd and/or smtpd on
# 127.0.0.1, plus the cleanup(8) socket in BASEDIR/spool/public/cleanup.
#
#   postfix-private.sh BASEDIR QMQP_PORT SMTPD_PORT [MODE]
#     QMQP_PORT   TCP port for qmqpd on 127.0.0.1, or "-" for none
#     SMTPD_PORT  TCP port for smtpd on 127.0.0.1, or "-" for none
#     MODE  hold (default): nothing ever leaves the queue. There is no qmgr(8),
#                           so accepted mail stays where cleanup(8) put it:
#                           spool/hold when header_checks applied (qmqpd and
#                           smtpd always enable them), spool/incoming when the
#                           client's cleanup flags did not ask for filtering
#                           (e.g. a postfix-queue client sending flags=0).
#                           Read it back with: postcat -c BASEDIR/etc -bh -q QUEUEID
#           file          : every message is delivered by pipe(8) to
#                           BASEDIR/out/<queue_id>.<pid>.eml (one per recipient)
#
# The smtpd listener relays for 127.0.0.0/8 (no DNS lookups, no error
# delays); hold mode runs no qmgr; spool/public is mode 0711 so that an
# unprivileged client (e.g. a server run by xinetd as nobody) can reach
# public/cleanup.
#
# Runs master(8) in the foreground (exec), so the PID of this script becomes
# the master PID; stop it with SIGTERM. Must run as root.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 BASEDIR QMQP_PORT|- SMTPD_PORT|- [hold|file]" >&2; exit 2; }
B=$(mkdir -p "$1" && cd "$1" && pwd); QMQP_PORT=$2; SMTPD_PORT=$3; MODE=${4:-hold}
case $MODE in hold|file) ;; *) echo "$0: unknown MODE '$MODE'" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "postfix master(8) must run as root" >&2; exit 1; }
chmod 755 "$B"
mkdir -p "$B/etc" "$B/spool" "$B/data" "$B/out"
chown postfix "$B/data"
chown nobody:nogroup "$B/out"

# Queue directories (what "postfix -c DIR check" would create, but in ms not ~3 s)
S=$B/spool
for d in active bounce corrupt defer deferred flush hold incoming private saved trace; do
  install -d -o postfix -g root -m 700 "$S/$d"
done
install -d -o postfix -g postdrop -m 730 "$S/maildrop"
install -d -o postfix -g postdrop -m 711 "$S/public"
install -d -o root -g root -m 755 "$S/pid"

cat > "$B/etc/main.cf" <<EOC
compatibility_level = 3.6
queue_directory = $S
data_directory = $B/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.test
mydomain = test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
maillog_file = $B/maillog
maillog_file_prefixes = $B
qmqpd_authorized_clients = 127.0.0.0/8
qmqpd_error_delay = 0s
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0s
smtpd_banner = \$myhostname ESMTP Postfix (test)
smtputf8_enable = no
biff = no
local_transport = error:local delivery disabled
alias_maps =
alias_database =
relay_domains =
EOC
if [ "$MODE" = hold ]; then
  printf '/^/ HOLD held for test inspection\n' > "$B/etc/header_checks"
  printf 'header_checks = regexp:%s/etc/header_checks\ndefault_transport = discard:never\n' "$B" >> "$B/etc/main.cf"
  # Without qmgr nobody hands out flow-control tokens, and cleanup(8) would
  # wait in_flow_delay (1 s) before accepting each message.
  echo 'in_flow_delay = 0s' >> "$B/etc/main.cf"
else
  : > "$B/etc/header_checks"
  # pipe(8) flag D (Delivered-To:) needs one recipient per delivery.
  printf 'default_transport = filedump\nfiledump_destination_recipient_limit = 1\n' >> "$B/etc/main.cf"
fi

cat > "$B/deliver.sh" <<EOC
#!/bin/sh
# pipe(8): stdin = message with Return-Path:, X-Original-To:, Delivered-To: (flags=DRO)
umask 022
t="$B/out/.\$1.\$\$.tmp"
cat > "\$t" && exec mv "\$t" "$B/out/\$1.\$\$.eml"
EOC
chmod 755 "$B/deliver.sh"

{
  echo '# service       type  private unpriv chroot wakeup maxproc command'
  [ "$QMQP_PORT" = - ] || echo "127.0.0.1:$QMQP_PORT inet  n       -      n      -      -       qmqpd"
  [ "$SMTPD_PORT" = - ] || echo "127.0.0.1:$SMTPD_PORT inet  n       -      n      -      -       smtpd"
  [ "$MODE" = hold ] || echo "qmgr            unix  n       -      n      300    1       qmgr"
  cat <<EOC
cleanup         unix  n       -      n      -      0       cleanup
rewrite         unix  -       -      n      -      -       trivial-rewrite
bounce          unix  -       -      n      -      0       bounce
defer           unix  -       -      n      -      0       bounce
trace           unix  -       -      n      -      0       bounce
verify          unix  -       -      n      -      1       verify
showq           unix  n       -      n      -      -       showq
error           unix  -       -      n      -      -       error
retry           unix  -       -      n      -      -       error
discard         unix  -       -      n      -      -       discard
proxymap        unix  -       -      n      -      -       proxymap
anvil           unix  -       -      n      -      1       anvil
scache          unix  -       -      n      -      1       scache
postlog         unix-dgram n  -      n      -      1       postlogd
filedump        unix  -       n      n      -      -       pipe
  flags=DRO user=nobody argv=$B/deliver.sh \${queue_id}
EOC
} > "$B/etc/master.cf"

# Postfix will not read a main.cf younger than ~2 s (it sleeps until it is older).
touch -d '-1 minute' "$B/etc/main.cf" "$B/etc/master.cf" "$B/etc/header_checks"

exec /usr/lib/postfix/sbin/master -c "$B/etc"
