#!/usr/bin/env bash
# Install the Debian packages the node tests need (containerd, runc, CNI plugins, iptables, conntrack,
# buildah, mmdebstrap, busybox-static). Idempotent and fast when all are installed: one dpkg query, no
# apt-get. Without root (or without apt-get) it only reports what is missing and exits 0: the node tests
# then skip with that reason (or fail under CI=true).
set -euo pipefail
packages=(runc containerd containernetworking-plugins iptables conntrack buildah mmdebstrap busybox-static)
log() { printf '[node-setup] %s\n' "$*" >&2; }

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "missing ${missing[*]} and cannot install them here (needs root and apt-get); node tests will not run"
  exit 0
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# One apt-get at a time on this machine (parallel checkouts may run this script together).
exec 8>/var/lib/apt/.nfllm-node-setup.lock
flock 8
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The containerd package starts its own daemon with the default config (and its own socket); the node
# tests run a private containerd instead, so stop the system one to leave its state untouched.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl stop containerd || true
  systemctl disable containerd >/dev/null 2>&1 || true
fi
log "installed"
