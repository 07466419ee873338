#!/usr/bin/env bash
# The Go source each test tool compiles (non-standard-library packages, every non-test .go file of each
# package directory), in MB: the figures behind the tools module (tests/controlplane/tools) and the
# promtool tag. Packages two tools share in one version count once in a union. (The stock CoreDNS,
# every plugin, is outside this module: `go install github.com/coredns/coredns@v1.15.0` built it.)
#   tests/bench/go_source.sh
set -euo pipefail
cd "$(dirname "$0")/../controlplane/tools"
export GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
dirs() { go list -deps -tags "$1" -f '{{if not .Standard}}{{.Dir}}{{end}}' "${@:2}" | sort -u; }
megabytes() { while read -r dir; do find "$dir" -maxdepth 1 -name '*.go' ! -name '*_test.go' -print0; done \
  | xargs -0 cat | wc -c | awk '{printf "%.0f MB\n", $1 / 1e6}'; }
printf 'promtool, every service discovery: %s\n' "$(dirs '' github.com/prometheus/prometheus/cmd/promtool | megabytes)"
printf 'promtool, -tags remove_all_sd:     %s\n' "$(dirs remove_all_sd github.com/prometheus/prometheus/cmd/promtool | megabytes)"
printf 'CoreDNS, five plugins (coredns/):   %s\n' "$(dirs '' ./coredns | megabytes)"
printf 'helm:                               %s\n' "$(dirs '' helm.sh/helm/v3/cmd/helm | megabytes)"
printf 'helm-docs:                          %s\n' "$(dirs '' github.com/norwoodj/helm-docs/cmd/helm-docs | megabytes)"
printf 'helm, helm-docs, promtool, CoreDNS together: %s\n' "$(dirs remove_all_sd helm.sh/helm/v3/cmd/helm \
  github.com/norwoodj/helm-docs/cmd/helm-docs github.com/prometheus/prometheus/cmd/promtool ./coredns | megabytes)"
