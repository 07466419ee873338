#!/usr/bin/env bash
# The README's two set-up commands on empty caches, timed: a fresh clone of HEAD, then `make demo`, then
# `make test` with CI=true (what .ci/run does). Every cache the project and its tools fill is pointed at
# a new empty folder: the project's tool cache (binaries, image, mypy, ruff, npm packages), Go's module
# and build caches, uv's cache and npm's. The Debian packages tests/node/setup.sh installs are the one
# thing it cannot empty (apt is machine-wide); the README gives their cold time separately.
#
#   tests/bench/cold_path.sh            # prints the three times; logs and caches stay in the printed folder
#   tests/bench/cold_path.sh 7584254    # the same for an earlier commit (a before/after on one machine)
#   COLD_PATH_KEEP=0 tests/bench/cold_path.sh   # removes the folder afterwards
#
# It needs the whole machine for 20-30 minutes: run nothing else meanwhile (the figures are wall time).
set -euo pipefail
repo="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
root="$(mktemp -d "${TMPDIR:-/tmp}/nfllm-cold-path.XXXXXX")"
export XDG_CACHE_HOME="$root/cache" GOMODCACHE="$root/go-mod" UV_CACHE_DIR="$root/cache/uv" npm_config_cache="$root/npm"
export GOCACHE="$XDG_CACHE_HOME/go-build"
git clone --quiet "$repo" "$root/clone"
cd "$root/clone"
git checkout --quiet "${1:-HEAD}"
echo "cold path of $(git rev-parse --short HEAD) in $root (logs: demo.log, test.log)"

step() {
  local name="$1" start status=0; shift
  start=$(date +%s)
  "$@" >"$root/$name.log" 2>&1 || status=$?
  local took=$(($(date +%s) - start))
  printf '%-10s %2d min %02d s  exit %d\n' "$name" $((took / 60)) $((took % 60)) "$status"
  return "$status"
}
total_start=$(date +%s)
outcome=0
step demo make demo || outcome=1
step test env CI=true make test || outcome=1
total=$(($(date +%s) - total_start))
printf '%-10s %2d min %02d s\n' total $((total / 60)) $((total % 60))
grep -E '^[=]+ .*(passed|failed)' "$root/test.log" || true

if [ "${COLD_PATH_KEEP:-1}" = 0 ]; then
  chmod -R u+w "$GOMODCACHE" 2>/dev/null || true   # the Go module cache is read-only
  rm -rf "$root"
fi
exit "$outcome"
