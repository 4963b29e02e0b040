package harness

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// serviceController stands in for the cloud's load balancer controller and kube-proxy: it
// gives LoadBalancer Services an external address in their status and forwards their ports (and
// node ports of NodePort Services) to the ready pod they select.
func (h *Harness) runServices(ctx context.Context) {
	h.syncEvery(ctx, 250*time.Millisecond, "loadbalancer", h.syncServices)
}

func (h *Harness) syncServices(ctx context.Context) error {
	var list corev1.ServiceList
	if err := h.Client.List(ctx, &list); err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	var fwds []forward
	for i := range list.Items {
		svc := &list.Items[i]
		key := svc.Namespace + "/" + svc.Name
		switch svc.Spec.Type {
		case corev1.ServiceTypeLoadBalancer:
			ip := h.lbAddress(key)
			if len(svc.Status.LoadBalancer.Ingress) != 1 || svc.Status.LoadBalancer.Ingress[0].IP != ip {
				updated := svc.DeepCopy()
				updated.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
				if err := h.Client.Status().Update(ctx, updated); err != nil {
					return fmt.Errorf("set load balancer address of %s: %w", key, err)
				}
				h.logf("loadbalancer: Service %s gets external address %s", key, ip)
			}
			// In loopback mode a Service whose every port equals its target port needs no
			// forwarder: the daemon's control listener takes every local address, and its
			// passive listeners bind the address the control connection reached, the load
			// balancer's. One translated port (21 -> 2121) puts the control connection on the
			// pod IP, and then the passive ports must be forwarded too.
			direct := true
			for _, p := range svc.Spec.Ports {
				direct = direct && p.Port == p.TargetPort.IntVal
			}
			for _, p := range svc.Spec.Ports {
				fwds = append(fwds, forward{listenIP: ip, listenPort: p.Port, ns: svc.Namespace, selector: svc.Spec.Selector, targetPort: p.TargetPort.IntVal, direct: direct})
			}
		case corev1.ServiceTypeNodePort:
			for _, p := range svc.Spec.Ports {
				if p.NodePort != 0 {
					fwds = append(fwds, forward{listenIP: h.network.nodeAddress(), listenPort: p.NodePort, ns: svc.Namespace, selector: svc.Spec.Selector, targetPort: p.TargetPort.IntVal})
				}
			}
		}
	}
	h.network.setForwards(fwds)
	if h.network.mode() == NetworkLoopback {
		return h.publishLoopbackEndpoints(ctx, list.Items)
	}
	return nil
}

// lbAddress is the address the load balancer gives a Service: an explicit one set by a test
// (to simulate an address change), else an allocated one.
func (h *Harness) lbAddress(key string) string {
	h.mu.Lock()
	ip, ok := h.lbOverrides[key]
	h.mu.Unlock()
	if ok {
		return ip
	}
	return h.network.loadBalancerAddress(key)
}
