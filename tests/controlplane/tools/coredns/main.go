// CoreDNS for the node tests (tests/node), built with only the plugins their Corefile uses. The stock
// binary compiles every plugin CoreDNS ships, cloud SDKs included (route53, azure, clouddns, ...):
// about three times the source for nothing the tests resolve. This is CoreDNS's documented way to pick
// plugins at compile time: import them and list them in dnsserver.Directives, in plugin.cfg's order.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

func init() {
	// The order of plugin.cfg: it is the order a query goes through the plugins.
	dnsserver.Directives = []string{"bind", "health", "errors", "cache", "kubernetes"}
}

func main() {
	coremain.Run()
}
