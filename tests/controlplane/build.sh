#!/usr/bin/env bash
# Build pinned kube-apiserver, kubectl, etcd, helm (and helm-docs, promtool, the gitops evaluators) from
# the Go module proxy, once.
#
# Binaries land in $NFLLM_TOOLS_DIR (default ~/.cache/northflank-llm-operator/tools/<versions>/bin),
# outside the repository, and are reused on every later run. Why a wrapper module per binary family:
# k8s.io/kubernetes and etcd carry replace directives, so `go install pkg@version` refuses them
# (see ../shared/reference/control-plane.md).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.4}"     # the etcd k8s v1.34.x pins in its go.mod

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools_module="$here/tools"
tools_module_version() { sed -n "s#^\s*$1 \(v[^ ]*\)\$#\1#p" "$tools_module/go.mod"; }
HELM_VERSION="$(tools_module_version helm.sh/helm/v3)"   # pinned in tools/go.mod
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/northflank-llm-operator"
tools_dir="${NFLLM_TOOLS_DIR:-$cache_root/tools/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION}"
bin="$tools_dir/bin"
work="$tools_dir/src"
mkdir -p "$bin" "$work"

export GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
log() { printf '[build-tools] %s\n' "$*" >&2; }

have() { [ -x "$bin/$1" ]; }

# helm, helm-docs, promtool and CoreDNS are built from one committed module, tools/ (see tools/tools.go):
# one set of dependency versions, so their shared libraries compile once. Its hash is part of every
# tool's build stamp, so changing the module rebuilds them.
tools_sources_hash() { (cd "$tools_module" && cat go.mod go.sum tools.go coredns/main.go) | sha256sum | cut -c1-16; }
build_from_tools_module() {
  local name="$1" pkg="$2"; shift 2
  (cd "$tools_module" && go build -mod=readonly -buildvcs=false -trimpath "$@" -o "$bin/$name.tmp" "$pkg") \
    && mv "$bin/$name.tmp" "$bin/$name"
}

# The node binaries (tests/node) live in a directory and lock of their own: they are only needed by the
# node tests, and building them never waits for (or blocks) the control-plane tools.
COREDNS_VERSION="$(tools_module_version github.com/coredns/coredns)"
node_dir="${NFLLM_NODE_TOOLS_DIR:-$cache_root/tools/node-k8s-$K8S_VERSION-coredns-$COREDNS_VERSION}"
case "${1:-all}" in
  node|node-path) tools_dir="$node_dir"; bin="$node_dir/bin"; work="$node_dir/src"; mkdir -p "$bin" "$work" ;;
esac

# One build at a time per tools dir: a second caller (a test session, `make`, CI) waits for the first
# and then finds the binaries in place. `path` never waits.
if [ "${1:-all}" != path ] && [ "${1:-all}" != node-path ] && command -v flock >/dev/null 2>&1; then
  exec 9>"$tools_dir/.build.lock"
  if ! flock -n 9; then
    log "another build is running in $tools_dir; waiting for it"
    flock 9
  fi
fi

build_k8s() {
  if have kube-apiserver && have kubectl; then return; fi
  local dir="$work/k8s" minor
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  mkdir -p "$dir"
  log "kube-apiserver + kubectl $K8S_VERSION (a cold build takes about 5 minutes on 2 cores)"
  if [ -f "$here/k8s/go.mod" ]; then
    cp "$here/k8s/go.mod" "$here/k8s/go.sum" "$dir/"
  else
    (cd "$dir" && rm -f go.mod go.sum && go mod init local/k8sbins >/dev/null 2>&1)
    local upstream
    upstream="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    # Every staging module k8s points at ./staging is replaced by its published v0.<minor>.<patch> twin.
    local staging_version="v0.${K8S_VERSION#v1.}"
    for mod in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$upstream"); do
      (cd "$dir" && go mod edit -replace "$mod=$mod@$staging_version")
    done
    (cd "$dir" && go mod edit -godebug default=go1.24 \
      && go get "k8s.io/kubernetes@$K8S_VERSION" \
      && go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION" \
      && go mod tidy)
  fi
  local ldf="-s -w" p date
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  (cd "$dir" && go build -mod=readonly -buildvcs=false -trimpath -pgo=off -tags=selinux,notest,grpcnotrace -ldflags="$ldf" \
      -o "$bin/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver && mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver")
  (cd "$dir" && go build -mod=readonly -buildvcs=false -trimpath -pgo=off -tags=selinux,notest,grpcnotrace -ldflags="$ldf" \
      -o "$bin/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl && mv "$bin/kubectl.tmp" "$bin/kubectl")
}

build_etcd() {
  if have etcd; then return; fi
  # Always pin (`go get pkg` alone means @upgrade and silently drags in a newer etcd).
  local dir="$work/etcd"
  mkdir -p "$dir"
  log "etcd $ETCD_VERSION"
  if [ -f "$here/etcd/go.mod" ]; then
    cp "$here/etcd/go.mod" "$here/etcd/go.sum" "$dir/"
  else
    (cd "$dir" && rm -f go.mod go.sum && go mod init local/etcdbin >/dev/null 2>&1 \
      && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
      && go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy)
  fi
  (cd "$dir" && go build -mod=readonly -buildvcs=false -trimpath -ldflags="-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3 && mv "$bin/etcd.tmp" "$bin/etcd")
}

# Helm's release builds stamp the Kubernetes version `helm template`/`helm lint` assume without a
# cluster (from its client-go: v0.37 -> 1.37 for v3.22.0); unstamped it would claim v1.20 and fail
# every chart's kubeVersion constraint. The stamp is recorded so changing it rebuilds helm.
HELM_K8S_MINOR="${HELM_K8S_MINOR:-37}"
build_helm() {
  local stamp="$HELM_VERSION k8s-1.$HELM_K8S_MINOR $(tools_sources_hash)"
  if have helm && [ "$(cat "$bin/.helm.build" 2>/dev/null)" = "$stamp" ]; then return; fi
  log "helm $HELM_VERSION"
  local ldf="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local pkg
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldf+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
  done
  build_from_tools_module helm helm.sh/helm/v3/cmd/helm -ldflags="$ldf"
  printf '%s\n' "$stamp" >"$bin/.helm.build"
}

# helm-docs renders charts/*/README.md from values.yaml comments (tests/chart checks the README is
# current). Go-installable (no replace directives);
# the version is recorded next to the binary so that bumping HELM_DOCS_VERSION rebuilds it.
HELM_DOCS_VERSION="$(tools_module_version github.com/norwoodj/helm-docs)"
build_helm_docs() {
  local stamp="$HELM_DOCS_VERSION $(tools_sources_hash)"
  if have helm-docs && [ "$(cat "$bin/.helm-docs.build" 2>/dev/null)" = "$stamp" ]; then return; fi
  log "helm-docs $HELM_DOCS_VERSION"
  build_from_tools_module helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs \
    -ldflags="-s -w -X main.version=${HELM_DOCS_VERSION#v}"
  printf '%s\n' "$stamp" >"$bin/.helm-docs.build"
}

# tests/gitops/evaluators: kstatus (Flux) and Argo CD's Lua engine as one small Go program that
# tests/gitops runs against statuses the operator's mapping produces. Built from the committed go.sum
# with -mod=readonly; a hash of its sources is recorded next to the binary so that any change to
# go.mod, go.sum or main.go rebuilds it (tests/gitops recomputes the same hash to find a stale binary).
gitops_src="$here/../gitops/evaluators"
gitops_sources_hash() { (cd "$gitops_src" && cat go.mod go.sum main.go) | sha256sum | cut -d' ' -f1; }
build_gitops_evaluators() {
  local stamp
  stamp="$(gitops_sources_hash)"
  if have gitops-evaluators && [ "$(cat "$bin/.gitops-evaluators.build" 2>/dev/null)" = "$stamp" ]; then return; fi
  log "gitops-evaluators (kstatus + gopher-lua; cold build takes about a minute)"
  (cd "$gitops_src" && go build -mod=readonly -buildvcs=false -trimpath -ldflags="-s -w" \
      -o "$bin/gitops-evaluators.tmp" . && mv "$bin/gitops-evaluators.tmp" "$bin/gitops-evaluators")
  printf '%s\n' "$stamp" >"$bin/.gitops-evaluators.build"
}

# A real node for tests/node: kubelet, kube-controller-manager, kube-scheduler and kube-proxy from the
# same k8s module set as kube-apiserver (k8s-node/go.mod is k8s/go.mod plus these tools; no shared
# dependency changes version), and CoreDNS for cluster DNS (no replace directives: go install works).
# A hash of the wrapper module is recorded so that changing it rebuilds. CoreDNS comes from the tools
# module (tools/coredns: only the plugins the node's Corefile uses).
node_sources_hash() { cat "$here/k8s-node/go.mod" "$here/k8s-node/go.sum" | sha256sum | cut -d' ' -f1; }
build_node() {
  local stamp cmd missing=0
  stamp="$K8S_VERSION $(node_sources_hash)"
  for cmd in kubelet kube-controller-manager kube-scheduler kube-proxy; do have "$cmd" || missing=1; done
  if [ "$missing" = 1 ] || [ "$(cat "$bin/.node.build" 2>/dev/null)" != "$stamp" ]; then
    local dir="$work/k8s-node" minor ldf="-s -w" p date
    minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    mkdir -p "$dir"
    cp "$here/k8s-node/go.mod" "$here/k8s-node/go.sum" "$dir/"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldf+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
    done
    for cmd in kube-scheduler kube-proxy kube-controller-manager kubelet; do
      log "$cmd $K8S_VERSION (the four node binaries take about 13 minutes cold on 2 cores)"
      (cd "$dir" && go build -mod=readonly -buildvcs=false -trimpath -pgo=off -tags=selinux,notest,grpcnotrace \
          -ldflags="$ldf" -o "$bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" && mv "$bin/$cmd.tmp" "$bin/$cmd")
    done
    printf '%s\n' "$stamp" >"$bin/.node.build"
  fi
  local coredns_stamp
  coredns_stamp="$COREDNS_VERSION $(tools_sources_hash)"
  if ! have coredns || [ "$(cat "$bin/.coredns.build" 2>/dev/null)" != "$coredns_stamp" ]; then
    log "coredns $COREDNS_VERSION (bind, errors, health, cache and kubernetes only)"
    build_from_tools_module coredns ./coredns -ldflags="-s -w"
    printf '%s\n' "$coredns_stamp" >"$bin/.coredns.build"
  fi
}

# promtool checks and unit-tests the chart's PrometheusRule (tests/chart/test_chart_alerts.py). Built from
# the committed wrapper module (prometheus/go.mod + go.sum pin github.com/prometheus/prometheus, whose
# v0.3xx.y module versions are the v3.xx.y releases); the version is recorded next to the binary so a
# bump rebuilds it. Built with Prometheus's own `remove_all_sd` tag: rule checks need no service
# discovery, and the cloud SDKs behind it were 60 % of the source compiled (129 MB of Go of 137 MB).
PROMETHEUS_VERSION="$(tools_module_version github.com/prometheus/prometheus)"
PROMTOOL_TAGS=remove_all_sd
build_promtool() {
  local stamp="$PROMETHEUS_VERSION $PROMTOOL_TAGS $(tools_sources_hash)"
  if have promtool && [ "$(cat "$bin/.promtool.build" 2>/dev/null)" = "$stamp" ]; then return; fi
  log "promtool (prometheus $PROMETHEUS_VERSION)"
  build_from_tools_module promtool github.com/prometheus/prometheus/cmd/promtool -tags="$PROMTOOL_TAGS" -ldflags="-s -w"
  printf '%s\n' "$stamp" >"$bin/.promtool.build"
}

# prometheus-operator's ServiceMonitor and PrometheusRule CRDs, installed in the test control plane so that
# the real API server validates the chart's monitoring objects against their schemas
# (tests/chart/test_chart_cluster.py). Taken from the module zip the Go module proxy serves (checked
# against the Go checksum database); no code is built.
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.94.0}"
monitoring_crds="$tools_dir/monitoring-crds"
fetch_monitoring_crds() {
  if [ "$(cat "$monitoring_crds/.version" 2>/dev/null)" = "$PROMETHEUS_OPERATOR_VERSION" ]; then return; fi
  log "prometheus-operator $PROMETHEUS_OPERATOR_VERSION CRDs (ServiceMonitor, PrometheusRule)"
  local module="github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" zip
  zip="$(cd "$work" && go mod download -json "$module" | sed -n 's/.*"Zip": "\(.*\)".*/\1/p')"
  rm -rf "$monitoring_crds.tmp" && mkdir -p "$monitoring_crds.tmp"
  unzip -q -j "$zip" -d "$monitoring_crds.tmp" \
    "$module/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
    "$module/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
  printf '%s\n' "$PROMETHEUS_OPERATOR_VERSION" >"$monitoring_crds.tmp/.version"
  rm -rf "$monitoring_crds" && mv "$monitoring_crds.tmp" "$monitoring_crds"
}

case "${1:-all}" in
  node) build_node ;;
  node-path) ;;
  all) build_etcd; build_k8s; build_helm; build_helm_docs; build_gitops_evaluators; build_promtool; fetch_monitoring_crds ;;
  etcd) build_etcd ;; k8s) build_k8s ;; helm) build_helm ;;
  helm-docs) build_helm_docs ;;
  gitops) build_gitops_evaluators ;;
  promtool) build_promtool ;;
  monitoring-crds) fetch_monitoring_crds ;;
  path) ;;
  *) echo "usage: $0 [all|etcd|k8s|helm|helm-docs|gitops|promtool|monitoring-crds|path|node|node-path]" >&2; exit 2 ;;
esac
case "${1:-all}" in path|node-path) ;; *) log "tools ready in $bin" ;; esac
echo "$bin"
