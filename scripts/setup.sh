#!/usr/bin/env bash
# Installs what the suite needs, idempotently: Debian packages (as root), a virtualenv in .venv with the
# project and its Python dependencies. Safe to run again; does nothing that is already done.
# Without root: have an administrator run the apt-get line this prints, then run this again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Debian packages the reference servers and the tests use: one file per feature in scripts/apt.d/
# (one package a line, # comments).
mapfile -t APT_PACKAGES < <(cat scripts/apt.d/*.txt | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
APT_PACKAGES+=(${LEMONADE_EXTRA_APT:-})

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: as root run: apt-get install -y ${missing[*]}   (then run this command again)" >&2
    exit 2
  fi
fi

# Client programs under test run as an unprivileged system user when the suite runs as root (clients/README.md)
if [ "$(id -u)" -eq 0 ] && ! getent passwd lemonade-client >/dev/null; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin lemonade-client
fi

# The real intermediaries' packages may start their services on install (CI machines without a policy-rc.d).
# The suite never uses them (private configs, free ports): stop and disable the ones this run just installed;
# a service that was there before is the machine owner's and is left alone.
if [ "$(id -u)" -eq 0 ] && ((${#missing[@]})); then
  for svc in nginx haproxy squid tinyproxy; do
    [[ " ${missing[*]} " == *" $svc "* ]] || continue
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$svc" ] && "/etc/init.d/$svc" status >/dev/null 2>&1; then
      "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
  done
fi

# Cyrus reference targets (--target cyrus / cyrus-push): Debian's binaries extracted and the WebSocket rebuild,
# cached by version outside the tree (servers/cyrus/build.sh; the rebuild takes ~2-3 min once, then is reused)
if [ "$(id -u)" -eq 0 ] && [ -z "${LEMONADE_SKIP_CYRUS:-}" ]; then
  bash servers/cyrus/build.sh all >/dev/null || { echo "setup: building the Cyrus targets failed" >&2; exit 2; }
fi

PY="${LEMONADE_PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.11 python3 python3.12 python3.13; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(0 if (3,11) <= sys.version_info[:2] < (3,12) else 1)' 2>/dev/null; then PY="$c"; break; fi
  done
  if [ -z "$PY" ]; then
    for c in python3.12 python3.13 python3; do
      if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3,11) else 1)' 2>/dev/null; then PY="$c"; break; fi
    done
  fi
fi
[ -n "$PY" ] || { echo "setup: need Python >= 3.11" >&2; exit 2; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=".venv/.lemonade-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c 'import conformance, mitmproxy, httpx, jmapc' 2>/dev/null; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,clients]" > .venv/pip-install.log 2>&1 \
    || { tail -20 .venv/pip-install.log >&2; echo "setup: pip install failed (log: .venv/pip-install.log)" >&2; exit 2; }
  .venv/bin/python -c 'import conformance, mitmproxy, httpx, pytest, xdist, build' || { echo "setup: Python install failed" >&2; exit 2; }
  echo "$want" > "$stamp"
fi
