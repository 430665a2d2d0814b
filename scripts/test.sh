#!/usr/bin/env bash
# The test command of README.md. Installs what the tests need on a fresh machine, then checks
# formatting and lints and runs every test (unit, property, statistical, end-to-end against a
# real daemon and real child processes).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the test suite needs (prometheus: the signal-source test runs a real one that
# scrapes the daemon; prometheus-alertmanager: alerts from it reach the webhook). Tests that need one fail with the install command in their message
# rather than passing silently. PostgreSQL (server binaries: initdb, pg_ctl) is
# for `migrations check --engine postgres`, which starts its own temporary cluster as a
# non-root user; the image usually has it, the package is installed when it does not.
# iproute2 and curl: the tests across hosts make network namespaces (`ip netns`, veth) and
# act as a user on one of them (curl inside it). redis-server: cache sweeps run against a real one.
# chromium and chromium-driver: the dashboard is tested in a real headless browser over WebDriver.
PACKAGES=(haproxy nginx prometheus prometheus-alertmanager iproute2 curl redis-server chromium chromium-driver)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt-get update -qq
  # The tests start their own servers on loopback; keep the packages from starting system
  # services (port 80, no init system in CI) by refusing service starts during the install.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  [ "$created_policy" = 1 ] && rm -f "$policy"
fi

# The API contract test validates the OpenAPI document (openapi-spec-validator) and fuzzes the
# daemon from it (schemathesis): both from PyPI, pinned, in a virtualenv under target/.
PY_VENV=target/py
if [ ! -x "$PY_VENV/bin/st" ] || [ ! -x "$PY_VENV/bin/openapi-spec-validator" ]; then
  echo "== installing schemathesis and openapi-spec-validator into $PY_VENV"
  if ! python3 -m venv "$PY_VENV" 2>/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv
    python3 -m venv "$PY_VENV"
  fi
  "$PY_VENV/bin/pip" install -q --disable-pip-version-check \
    "schemathesis==4.32.5" "openapi-spec-validator==0.9.0"
fi

# The tests start their own haproxy/nginx/prometheus on free loopback ports and end only what
# they started; a system server that happens to run is left alone (never stopped by name).

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --profile ci
else
  cargo test --workspace --locked
fi
