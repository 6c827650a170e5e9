// CoreDNS with only the plugins a cluster DNS needs (hack/node-tools.sh builds it): the full
// build compiles every cloud provider's SDK in as well. The order below is CoreDNS's own
// (plugin.cfg), which decides how a query goes through the plugins.
package main

import (
	"log"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	directives := []string{"ready", "health", "prometheus", "errors", "log", "loadbalance", "cache", "kubernetes"}
	if err := dnsserver.SetDirectives(directives); err != nil {
		log.Fatal(err)
	}
	coremain.Run()
}
