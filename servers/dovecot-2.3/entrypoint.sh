#!/bin/sh
# /lemonade holds dovecot.conf, cert.pem, key.pem, passwd (rendered by the provider); home, run and state
# are tmpfs mounts (mail vanishes with the container). Dovecot becomes PID 1 and ends on SIGTERM.
set -e
chown dovecot:dovecot /lemonade/home
chmod 600 /lemonade/key.pem
[ -f /lemonade/rsa-key.pem ] && chmod 600 /lemonade/rsa-key.pem
exec dovecot -F -c /lemonade/dovecot.conf
