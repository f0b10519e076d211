#!/bin/sh
# Rebuild Debian's cyrus-imapd with WebSockets: libwslay-dev has no libwslay.pc, so configure's
# pkg-config probe fails quietly; giving WSLAY_CFLAGS/WSLAY_LIBS skips the probe, --with-wslay=yes makes
# a missing libwslay an error instead of a push-less httpd.
set -eu
apt-get source -qq cyrus-imapd >/dev/null 2>&1 || apt-get source cyrus-imapd
cd cyrus-imapd-*/
grep -q -- '--with-wslay' debian/rules || sed -i 's/--enable-jmap/--enable-jmap --with-wslay=yes/' debian/rules
grep -q -- '--with-wslay=yes' debian/rules
export WSLAY_CFLAGS=-I/usr/include/wslay WSLAY_LIBS=-lwslay DEB_BUILD_OPTIONS="nocheck nodoc noddebs parallel=$(nproc)"
dpkg-buildpackage -b -uc -us > ../build.log 2>&1 || { tail -40 ../build.log; exit 1; }
grep -E 'wslay' ../build.log | head -5
mkdir -p /build/debs && cp ../cyrus-common_*.deb ../cyrus-imapd_*.deb ../cyrus-caldav_*.deb /build/debs/
