#!/usr/bin/env bash
# Prepares the two Cyrus reference targets, cached by Debian version OUTSIDE the git tree:
#   $CACHE/cyrus-<version>/root       Debian's own binaries (cyrus-common, cyrus-imapd, cyrus-caldav), extracted
#   $CACHE/cyrus-push-<version>/root  the same source package rebuilt with WebSockets (wslay): JMAP push
# Nothing is installed system-wide except the runtime libraries (scripts/apt.d/jmap.txt) and, for the
# rebuild, the package's build dependencies (apt-get build-dep; it may upgrade a few system libraries).
# cyrus-imapd itself is never installed: it conflicts with dovecot-imapd.
# Usage: build.sh [stock|push|all]   (default all); idempotent: a complete cache entry is reused.
# CACHE defaults to $LEMONADE_CACHE, else /var/cache/lemonade as root, else ${XDG_CACHE_HOME:-~/.cache}/lemonade.
set -euo pipefail
what=${1:-all}
if [ -n "${LEMONADE_CACHE:-}" ]; then CACHE=$LEMONADE_CACHE
elif [ "$(id -u)" -eq 0 ]; then CACHE=/var/cache/lemonade
else CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/lemonade; fi
mkdir -p "$CACHE"
VERSION=$(apt-cache policy cyrus-common | awk '/Candidate:/{print $2}')
[ -n "$VERSION" ] && [ "$VERSION" != "(none)" ] || { echo "cyrus: no cyrus-common candidate in apt" >&2; exit 2; }
log() { echo "cyrus: $*" >&2; }

ensure_user() {
  # master, started as root, switches to the compiled-in user "cyrus" (group mail).
  getent passwd cyrus >/dev/null && return 0
  [ "$(id -u)" -eq 0 ] || { log "user cyrus missing and not root"; exit 2; }
  useradd --system --gid mail --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin cyrus
}

stock() {
  local dest=$CACHE/cyrus-$VERSION
  [ -f "$dest/.complete" ] && { echo "$dest"; return 0; }
  rm -rf "$dest"; mkdir -p "$dest/debs"
  (cd "$dest/debs" && apt-get -o APT::Sandbox::User=root download -qq cyrus-common="$VERSION" cyrus-imapd="$VERSION" cyrus-caldav="$VERSION" >/dev/null)
  for d in "$dest"/debs/*.deb; do dpkg-deb -x "$d" "$dest/root"; done
  touch "$dest/.complete"; echo "$dest"
}

push() {
  local dest=$CACHE/cyrus-push-$VERSION
  [ -f "$dest/.complete" ] && { echo "$dest"; return 0; }
  [ "$(id -u)" -eq 0 ] || { log "building cyrus-push needs root (apt-get build-dep)"; exit 2; }
  # one build per cache at a time: a second caller waits for the first and then reuses its result
  exec 9>"$CACHE/.cyrus-push.lock"
  flock 9
  [ -f "$dest/.complete" ] && { echo "$dest"; return 0; }
  local t0=$SECONDS B=$CACHE/build-cyrus-push-$VERSION
  rm -rf "$B" "$dest"; mkdir -p "$B/apt/lists/partial"; cd "$B"
  local K=signed-by=/usr/share/keyrings/debian-archive-keyring.gpg U M S
  U=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/{print $2}'; awk '/^deb /{print $2}' /etc/apt/sources.list 2>/dev/null || true)
  M=$(echo "$U" | grep -v security | head -1); S=$(echo "$U" | grep security | head -1)
  M=${M:-http://deb.debian.org/debian}; S=${S:-http://deb.debian.org/debian-security}
  for t in deb deb-src; do echo "$t [$K] $M bookworm main"; echo "$t [$K] $S bookworm-security main"; done > apt/sources.list
  local APTO=(-oDir::Etc::SourceList=$B/apt/sources.list -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists=$B/apt/lists -oDPkg::Lock::Timeout=600)
  apt-get "${APTO[@]}" -qq update
  # Some mirrors serve only part of a source package per version: try this version, then the others, and
  # check the two files we need against the Sources index.
  local upstream=${VERSION%-*} want
  want=$(apt-cache "${APTO[@]}" showsrc cyrus-imapd | awk -v v="$VERSION" '/^Version:/{ver=$2} /^Checksums-Sha256:/{f=1;next} /^[^ ]/{f=0}
    f && ver==v && /orig.tar.gz$|debian.tar.xz$/ {print $1"  "$3}')
  [ -n "$want" ] || { log "no source for $VERSION"; exit 2; }
  for v in "$VERSION" $(apt-cache "${APTO[@]}" showsrc cyrus-imapd | awk '/^Version:/{print $2}' | grep -vxF "$VERSION"); do
    echo "$want" | sha256sum -c --status 2>/dev/null && break
    apt-get "${APTO[@]}" source --download-only "cyrus-imapd=$v" >/dev/null 2>&1 || true
  done
  echo "$want" | sha256sum -c --quiet
  tar xzf "cyrus-imapd_$upstream.orig.tar.gz"
  tar xJf "cyrus-imapd_$VERSION.debian.tar.xz" -C "cyrus-imapd-$upstream"
  cd "cyrus-imapd-$upstream"
  log "installing build dependencies"
  DEBIAN_FRONTEND=noninteractive apt-get "${APTO[@]}" -qq -y --no-install-recommends build-dep ./ >/dev/null
  # Debian's libwslay-dev has no libwslay.pc, so configure silently drops WebSockets (and JMAP push).
  sed -i 's/^\t --enable-jmap \\$/\t --enable-jmap \\\n\t --with-wslay=yes \\/' debian/rules
  grep -q -- '--with-wslay=yes' debian/rules || { log "could not patch debian/rules"; exit 2; }
  log "compiling (about 2 minutes on 2 cores, more on a busy machine; log: $B/build.log)"
  WSLAY_CFLAGS=-I/usr/include/wslay WSLAY_LIBS=-lwslay DEB_BUILD_OPTIONS=nocheck \
    dpkg-buildpackage -b -uc -us -j"$(nproc)" > "$B/build.log" 2>&1 &
  local pid=$! n
  # progress every 15 s: tail --pid returns as soon as the build ends, so nothing waits longer than the build
  while ! timeout 15 tail --pid="$pid" -f /dev/null; do
    n=$(grep -cE '^libtool: compile|^gcc .* -c ' "$B/build.log" || true)
    if [ "${n:-0}" -eq 0 ]; then log "configuring: $((SECONDS - t0)) s"; else log "compiling: $((SECONDS - t0)) s, $n files so far"; fi
  done
  wait "$pid" || { tail -30 "$B/build.log" >&2; exit 2; }
  mkdir -p "$dest"
  for p in common imapd caldav; do dpkg-deb -x "$B/cyrus-${p}_${VERSION}_"*.deb "$dest/root"; done
  echo "$((SECONDS - t0))" > "$dest/build-seconds"
  touch "$dest/.complete"; cd /; rm -rf "$B"
  log "cyrus-push built in $((SECONDS - t0)) s"
  echo "$dest"
}

ensure_user
case $what in
  stock) stock ;;
  push) push ;;
  all) stock; push ;;
  *) echo "usage: $0 [stock|push|all]" >&2; exit 2 ;;
esac
