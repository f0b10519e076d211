#!/bin/sh
# Runs a command in a private mount namespace whose /dev/log is the socket given as $1: Cyrus logs only
# through syslog(3), which always writes to /dev/log; this way no /dev/log appears on the host.
# Usage: private-log.sh SOCKET COMMAND...   (needs CAP_SYS_ADMIN; the caller falls back when it fails)
set -e
sock=$1; shift
exec unshare --mount --propagation private sh -e -c '
  sock=$1; shift
  old=$(mktemp -d); mount --bind /dev "$old"
  mount -t tmpfs -o mode=755 lemonade-dev /dev
  for f in "$old"/* "$old"/.[!.]*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    n=/dev/$(basename "$f")
    if [ -L "$f" ]; then cp -P "$f" "$n"
    elif [ -d "$f" ]; then mkdir -p "$n"; mount --rbind "$f" "$n"
    else touch "$n"; mount --bind "$f" "$n"; fi
  done
  ln -sf "$sock" /dev/log
  umount -l "$old"; rmdir "$old"
  exec "$@"' sh "$sock" "$@"
