#!/usr/bin/env bash
# Install the Debian packages the test suite starts for real, and only the missing ones:
# mosquitto (+ clients), influxdb 1.x (influxd), victoria-metrics, chromium, and docker-compose
# (only its `config` check of docker-compose.yml: no Docker engine is needed or started).
#
# Non-interactive and idempotent: safe on a fresh CI machine (root, no stdin) and on a
# developer machine where everything is already there (then it does nothing and asks no
# registry). The packages' own services are kept from starting: tests start their own
# instances on free loopback ports, and a system mosquitto on 1883 or influxd on 8086/8088
# would only get in the way.
set -euo pipefail

# package -> a binary that proves it is installed
declare -A probe=(
  [mosquitto]=mosquitto
  [mosquitto-clients]=mosquitto_pub
  [influxdb]=influxd
  [victoria-metrics]=victoria-metrics
  [chromium]=chromium
  [docker-compose]=docker-compose
)
services=(mosquitto influxdb victoria-metrics)

installed() {
  local pkg=$1
  dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed \
    && PATH="$PATH:/usr/sbin:/sbin" command -v "${probe[$pkg]}" >/dev/null 2>&1
}

missing=()
for pkg in mosquitto mosquitto-clients influxdb victoria-metrics chromium docker-compose; do
  installed "$pkg" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-system: all Debian packages present"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: missing ${missing[*]} and no apt-get here; install them by hand" >&2
  exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo -n)
  else
    echo "setup-system: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
  fi
fi

echo "setup-system: installing ${missing[*]}"

# Keep the packages' init scripts from starting their services (invoke-rc.d asks
# policy-rc.d; 101 = "action not allowed"). Only remove the policy if we put it there.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
  own_policy=1
fi
cleanup() {
  if [ "$own_policy" -eq 1 ]; then "${sudo[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}"

# Belt and braces where a service manager did start something, and keep them from
# starting at boot (no systemd in a container: each step may fail, and that is fine).
for svc in "${services[@]}"; do
  "${sudo[@]}" service "$svc" stop >/dev/null 2>&1 || true
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    "${sudo[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done

still=()
for pkg in "${missing[@]}"; do installed "$pkg" || still+=("$pkg"); done
if [ ${#still[@]} -ne 0 ]; then
  echo "setup-system: still missing after install: ${still[*]}" >&2
  exit 1
fi
echo "setup-system: done"
