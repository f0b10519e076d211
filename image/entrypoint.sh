#!/bin/sh
# Runs `lemonade ARGS...` (signals forwarded, its exit code kept). The engine runs us as root: files the run
# wrote under /out are handed to the owner of /out, so a user's mounted folder stays theirs.
lemonade "$@" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null' TERM
trap 'kill -INT $pid 2>/dev/null' INT
wait $pid
rc=$?
if [ $rc -gt 128 ]; then wait $pid; rc=$?; fi  # interrupted wait: collect the real status
if [ -d /out ]; then
  owner=$(stat -c %u:%g /out)
  [ "$owner" = "0:0" ] || find /out -xdev -user 0 -exec chown -h "$owner" {} + 2>/dev/null
fi
exit $rc
