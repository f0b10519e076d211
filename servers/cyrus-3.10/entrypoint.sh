#!/bin/sh
# /lemonade holds imapd.conf, cyrus.conf, cert.pem, key.pem, passwd (user:{PLAIN}password lines) and log/;
# conf, spool and run are tmpfs mounts. Cyrus logs only to syslog: busybox syslogd writes log/syslog.
set -e
D=/lemonade
mkdir -p $D/conf/db $D/conf/socket $D/conf/proc $D/conf/log $D/conf/msg $D/conf/ptclient $D/conf/quota \
         $D/conf/user $D/conf/lock $D/conf/sieve $D/conf/sync $D/spool $D/run $D/tmp
cp $D/cert.pem $D/key.pem $D/run/
sed 's/^\([^:]*\):{PLAIN}\([^:]*\):.*/\1 \2/' $D/passwd | while read -r user pw; do
  printf '%s' "$pw" | saslpasswd2 -p -f $D/conf/sasldb2 -u localhost -c "$user"
done
chown -R cyrus:mail $D/conf $D/spool $D/run $D/tmp
chmod 600 $D/run/key.pem
rm -f /dev/log
busybox syslogd -n -O $D/log/syslog &
for i in 1 2 3 4 5 6 7 8 9 10; do [ -S /dev/log ] && break; sleep 0.05; done
exec /usr/lib/cyrus/bin/master -C $D/imapd.conf -M $D/cyrus.conf -D -p $D/run/master.pid
