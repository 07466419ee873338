//go:build tools

// Package tools pins the test tools built from this one module, so that they resolve to one set of
// dependency versions: helm, promtool and CoreDNS all carry the Kubernetes client libraries, gRPC,
// protobuf and OpenTelemetry, and with one version of each the Go build cache compiles them once
// instead of three times (70 MB of Go source instead of 118-160 MB on a cold cache). build.sh builds
// each tool from here with -mod=readonly; coredns/ is CoreDNS with only the plugins the node uses.
package tools

import (
	_ "github.com/norwoodj/helm-docs/cmd/helm-docs"
	_ "github.com/prometheus/prometheus/cmd/promtool"
	_ "helm.sh/helm/v3/cmd/helm"
)
