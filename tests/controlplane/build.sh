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
HELM_VERSION="${HELM_VERSION:-v3.22.0}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/northflank-llm-operator"
tools_dir="${NFLLM_TOOLS_DIR:-$cache_root/tools/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION}"
bin="$tools_dir/bin"
work="$tools_dir/src"
mkdir -p "$bin" "$work"

export GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
log() { printf '[build-tools] %s\n' "$*" >&2; }

have() { [ -x "$bin/$1" ]; }

# The node binaries (tests/node) live in a directory and lock of their own: they are only needed by the
# node tests, and building them never waits for (or blocks) the control-plane tools.
COREDNS_VERSION="$(sed -n 's#^\(require\)\{0,1\}\s*github.com/coredns/coredns \(v[^ ]*\).*#\2#p' "$here/coredns/go.mod")"
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
  local stamp="$HELM_VERSION k8s-1.$HELM_K8S_MINOR"
  if have helm && [ "$(cat "$bin/.helm.build" 2>/dev/null)" = "$stamp" ]; then return; fi
  log "helm $HELM_VERSION"
  local ldf="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local pkg
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldf+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
  done
  GOBIN="$work/helm-bin" go install -buildvcs=false -trimpath -ldflags="$ldf" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$work/helm-bin/helm" "$bin/helm"
  printf '%s\n' "$stamp" >"$bin/.helm.build"
}

# helm-docs renders charts/*/README.md from values.yaml comments (tests/chart checks the README is
# current). Go-installable (no replace directives);
# the version is recorded next to the binary so that bumping HELM_DOCS_VERSION rebuilds it.
HELM_DOCS_VERSION="${HELM_DOCS_VERSION:-v1.14.2}"
build_helm_docs() {
  if have helm-docs && [ "$(cat "$bin/.helm-docs.version" 2>/dev/null)" = "$HELM_DOCS_VERSION" ]; then return; fi
  log "helm-docs $HELM_DOCS_VERSION"
  GOBIN="$work/helm-docs-bin" go install -buildvcs=false -trimpath \
    -ldflags="-s -w -X main.version=${HELM_DOCS_VERSION#v}" \
    "github.com/norwoodj/helm-docs/cmd/helm-docs@$HELM_DOCS_VERSION"
  mv "$work/helm-docs-bin/helm-docs" "$bin/helm-docs"
  printf '%s\n' "$HELM_DOCS_VERSION" >"$bin/.helm-docs.version"
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
# A hash of the wrapper module is recorded so that changing it rebuilds. CoreDNS is built from its own
# wrapper module (coredns/main.go: only the plugins the node's Corefile uses), hashed the same way.
coredns_sources_hash() { (cd "$here/coredns" && cat go.mod go.sum main.go) | sha256sum | cut -d' ' -f1; }
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
  coredns_stamp="$(coredns_sources_hash)"
  if ! have coredns || [ "$(cat "$bin/.coredns.build" 2>/dev/null)" != "$coredns_stamp" ]; then
    log "coredns $COREDNS_VERSION (bind, errors, health, cache and kubernetes only)"
    (cd "$here/coredns" && go build -mod=readonly -buildvcs=false -trimpath -ldflags="-s -w" \
        -o "$bin/coredns.tmp" . && mv "$bin/coredns.tmp" "$bin/coredns")
    printf '%s\n' "$coredns_stamp" >"$bin/.coredns.build"
  fi
}

# promtool checks and unit-tests the chart's PrometheusRule (tests/chart/test_chart_alerts.py). Built from
# the committed wrapper module (prometheus/go.mod + go.sum pin github.com/prometheus/prometheus, whose
# v0.3xx.y module versions are the v3.xx.y releases); the version is recorded next to the binary so a
# bump rebuilds it. Built with Prometheus's own `remove_all_sd` tag: rule checks need no service
# discovery, and the cloud SDKs behind it were 60 % of the source compiled (129 MB of Go of 137 MB).
PROMETHEUS_VERSION="$(sed -n 's#^\s*github.com/prometheus/prometheus \(v[^ ]*\).*#\1#p' "$here/prometheus/go.mod")"
PROMTOOL_TAGS=remove_all_sd
build_promtool() {
  if have promtool && [ "$(cat "$bin/.promtool.version" 2>/dev/null)" = "$PROMETHEUS_VERSION $PROMTOOL_TAGS" ]; then return; fi
  local dir="$work/prometheus"
  mkdir -p "$dir"
  log "promtool (prometheus $PROMETHEUS_VERSION)"
  cp "$here/prometheus/go.mod" "$here/prometheus/go.sum" "$dir/"
  (cd "$dir" && go build -mod=readonly -buildvcs=false -trimpath -tags="$PROMTOOL_TAGS" -ldflags="-s -w" \
      -o "$bin/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool && mv "$bin/promtool.tmp" "$bin/promtool")
  printf '%s\n' "$PROMETHEUS_VERSION $PROMTOOL_TAGS" >"$bin/.promtool.version"
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
