package realnode

import (
	"context"
	"fmt"
	"net/netip"
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
	return nil
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
	if _, err := run("ip", "route", "add", loadBalancerCIDR, "via", c.net.nodeIP, "dev", c.net.rootVeth); err != nil {
		return fmt.Errorf("route %s to the node (another cluster of this machine may own it): %w", loadBalancerCIDR, err)
	}
	return nil
}
