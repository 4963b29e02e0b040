package realnode

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// runLoadBalancer is the cloud's load balancer controller, in the way MetalLB's controller is:
// it only allocates. Each LoadBalancer Service (of the default class: one naming a
// loadBalancerClass belongs to another implementation) gets an address of 203.0.113.128/25
// in status.loadBalancer.ingress; kube-proxy programs that address like any ingress IP, and the
// outside client's route to the pool points at the node, as MetalLB's L2 speaker makes the
// network deliver it there.
func (c *Cluster) runLoadBalancer(ctx context.Context) {
	c.poll(ctx, 250*time.Millisecond, "loadbalancer", c.syncLoadBalancers)
}

func (c *Cluster) syncLoadBalancers(ctx context.Context) error {
	var list corev1.ServiceList
	if err := c.Client.List(ctx, &list); err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	live := map[string]bool{}
	for i := range list.Items {
		svc := &list.Items[i]
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.LoadBalancerClass != nil {
			continue
		}
		key := svc.Namespace + "/" + svc.Name
		live[key] = true
		ip, err := c.lbAddressFor(key)
		if err != nil {
			return err
		}
		if len(svc.Status.LoadBalancer.Ingress) == 1 && svc.Status.LoadBalancer.Ingress[0].IP == ip {
			continue
		}
		updated := svc.DeepCopy()
		updated.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		if err := c.Client.Status().Update(ctx, updated); err != nil {
			return fmt.Errorf("set load balancer address of %s: %w", key, err)
		}
		c.logf("loadbalancer: Service %s gets %s", key, ip)
	}
	// Addresses of deleted Services go back to the pool.
	c.mu.Lock()
	for key := range c.lbAllocated {
		if !live[key] {
			delete(c.lbAllocated, key)
		}
	}
	c.mu.Unlock()
	if len(c.nodes) > 1 {
		return c.routeLoadBalancers(ctx, list.Items)
	}
	return nil
}

// routeLoadBalancers is the load balancer in front of several nodes, as a cloud's network load
// balancer is: each new connection to a load balancer address goes to one of the nodes that
// pass its health check, chosen at random, and stays with that node for its whole life
// (connection tracking), whatever happens to the set afterwards. With externalTrafficPolicy
// Local the health check is the one cloud load balancers use, kube-proxy's own answer on the
// Service's healthCheckNodePort (200 while kube-proxy on that node has programmed a ready local
// endpoint, 503 otherwise), so a node gets connections only once its kube-proxy can take them,
// and a node whose last replica is draining gets no new ones but keeps its established ones
// until they end, as with connection draining. With Cluster, every node. An address no node
// serves goes by the default route (to the first node).
//
// In the outside client's namespace: an nftables chain on the output route hook marks each new
// connection with its node (ct mark) and every packet with its connection's mark; a routing
// rule per node sends marked packets by a table whose route to the pool points at that node.
func (c *Cluster) routeLoadBalancers(ctx context.Context, services []corev1.Service) error {
	want := map[string][]*node{} // address -> the nodes serving it
	hc := &http.Client{
		Timeout: time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.DialContext(ctx, Outside, network, addr)
		}},
	}
	for i := range services {
		svc := &services[i]
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.LoadBalancerClass != nil || len(svc.Status.LoadBalancer.Ingress) != 1 {
			continue
		}
		ip := svc.Status.LoadBalancer.Ingress[0].IP
		local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		for _, nd := range c.nodes {
			if !local || nodeHealthy(ctx, hc, nd, svc.Spec.HealthCheckNodePort) {
				want[ip] = append(want[ip], nd)
			}
		}
	}
	routes := map[string][]string{}
	for ip, nodes := range want {
		for _, nd := range nodes {
			routes[ip] = append(routes[ip], nd.name)
		}
	}
	c.mu.Lock()
	same := maps.EqualFunc(routes, c.lbRoutes, slices.Equal[[]string])
	c.mu.Unlock()
	if same {
		return nil
	}
	if err := c.loadLBRules(want); err != nil {
		return err
	}
	for ip, nodes := range routes {
		c.logf("loadbalancer: new connections to %s go to %s", ip, strings.Join(nodes, ", "))
	}
	c.mu.Lock()
	c.lbRoutes = routes
	c.mu.Unlock()
	return nil
}

// nodeHealthy asks kube-proxy on nd through hc (from the outside network) whether it has a
// ready local endpoint of the Service whose health check node port is port.
func nodeHealthy(ctx context.Context, hc *http.Client, nd *node, port int32) bool {
	if port == 0 {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(nd.ip, strconv.Itoa(int(port)))+"/", nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// lbTable is the load balancer's nftables table in the outside client's namespace.
const lbTable = "realnode_lb"

// loadLBRules replaces the load balancer's rules (atomically: nft -f). Connection marks live
// in the conntrack entries, so established connections keep their node.
func (c *Cluster) loadLBRules(want map[string][]*node) error {
	var rules strings.Builder
	fmt.Fprintf(&rules, "table ip %[1]s {}\ndelete table ip %[1]s\ntable ip %[1]s {\n", lbTable)
	rules.WriteString("\tchain output {\n\t\ttype route hook output priority mangle; policy accept;\n")
	// "ct mark 0": a connection's node is chosen once, by its first SYN; a retransmitted SYN
	// (still a new connection) goes the same way.
	ips := slices.Sorted(maps.Keys(want))
	for _, ip := range ips {
		nodes := want[ip]
		if len(nodes) == 1 {
			fmt.Fprintf(&rules, "\t\tip daddr %s ct state new ct mark 0 ct mark set %d\n", ip, nodes[0].lbMark())
			continue
		}
		var m []string
		for i, nd := range nodes {
			m = append(m, fmt.Sprintf("%d : %d", i, nd.lbMark()))
		}
		fmt.Fprintf(&rules, "\t\tip daddr %s ct state new ct mark 0 ct mark set numgen random mod %d map { %s }\n", ip, len(nodes), strings.Join(m, ", "))
	}
	fmt.Fprintf(&rules, "\t\tip daddr %s ct mark != 0 meta mark set ct mark\n\t}\n}\n", loadBalancerCIDR)
	cmd := exec.Command("ip", "netns", "exec", c.net.clientNS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("load balancer rules: %w: %s\n%s", err, strings.TrimSpace(string(out)), rules.String())
	}
	return nil
}

// lbMark is the packet mark that routes to the node (a routing rule per node, set up with the
// network when there are several nodes), and its routing table.
func (nd *node) lbMark() int       { return nd.index + 1 }
func (nd *node) lbRouteTable() int { return 100 + nd.index + 1 }

// LoadBalancerNodes are the nodes the load balancer sends new connections for address ip to, as
// last programmed: with several nodes, those that serve the address (see routeLoadBalancers);
// with one node, that node.
func (c *Cluster) LoadBalancerNodes(ip string) []string {
	if len(c.nodes) == 1 {
		return c.NodeNames()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lbRoutes[ip]...)
}

// lbAddressFor is a Service's address: the one a test set, else the one allocated before, else
// the lowest free one of the pool.
func (c *Cluster) lbAddressFor(key string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ip, ok := c.lbOverrides[key]; ok {
		return ip, nil
	}
	if ip, ok := c.lbAllocated[key]; ok {
		return ip, nil
	}
	used := map[string]bool{}
	for _, ip := range c.lbAllocated {
		used[ip] = true
	}
	for _, ip := range c.lbOverrides {
		used[ip] = true
	}
	for octet := firstLBOctet; octet <= lastLBOctet; octet++ {
		ip := fmt.Sprintf("203.0.113.%d", octet)
		if !used[ip] {
			c.lbAllocated[key] = ip
			return ip, nil
		}
	}
	return "", fmt.Errorf("load balancer pool %s is exhausted", loadBalancerCIDR)
}

// SetLoadBalancerAddress makes the load balancer give a Service another address, as a cloud
// does when a load balancer is re-created. The address must be in 203.0.113.128/25 (the outside
// client's route to the node covers only that pool); 203.0.113.250-254 are never allocated.
func (c *Cluster) SetLoadBalancerAddress(namespace, service, ip string) {
	addr, err := netip.ParseAddr(ip)
	if err != nil || !netip.MustParsePrefix(loadBalancerCIDR).Contains(addr) {
		c.logf("loadbalancer: SetLoadBalancerAddress(%s/%s, %q): not in %s, the outside client cannot reach it", namespace, service, ip, loadBalancerCIDR)
	}
	c.mu.Lock()
	c.lbOverrides[namespace+"/"+service] = ip
	c.mu.Unlock()
}

// poll runs sync now and then every interval until ctx ends, logging its errors under what.
func (c *Cluster) poll(ctx context.Context, interval time.Duration, what string, sync func(context.Context) error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := sync(ctx); err != nil && ctx.Err() == nil {
			c.logf("%s: %v", what, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// RouteLoadBalancersFromHost routes the load balancer's addresses (LoadBalancerCIDR, from the
// documentation range 203.0.113.0/24) from the root namespace to the node, so that clients on
// this machine reach the servers as the outside client does: `make demo` as root prints those
// addresses. Only one cluster at a time can own the route; it goes with the cluster's link to
// the root namespace at Stop.
func (c *Cluster) RouteLoadBalancersFromHost() error {
	first := c.nodes[0]
	if _, err := run("ip", "route", "add", loadBalancerCIDR, "via", first.ip, "dev", first.rootVeth); err != nil {
		return fmt.Errorf("route %s to the node (another cluster of this machine may own it): %w", loadBalancerCIDR, err)
	}
	return nil
}
