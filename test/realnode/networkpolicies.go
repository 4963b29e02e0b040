package realnode

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// NetworkPolicy enforcement (Options.NetworkPolicies) is kube-router's network policy
// controller (github.com/cloudnativelabs/kube-router, built by hack/node-runtime.sh) on its
// own, as k3s embeds it beside another CNI: iptables chains and ipsets in each node's network
// namespace, through which routed and bridged traffic to and from the node's pods passes
// (FORWARD, with physdev for the bridge: the node sets bridge-nf-call-iptables). A policy's
// pods get a default deny that REJECTs what no rule admits. SIG Network's kube-network-policies
// would be the reference choice; it needs nftables' queue expression, which this kernel does
// not have (docs/testing.md).
const networkPoliciesName = "kube-router"

// networkPoliciesChain is the chain kube-router hooks into FORWARD once its controller runs.
const networkPoliciesChain = "KUBE-ROUTER-FORWARD"

// startNetworkPolicies runs the controller on nd, in the node's namespaces like kube-proxy,
// with the administrator's kubeconfig: its RBAC is not what the tests examine. Only the
// firewall runs (no routing, no service proxy, no CNI configuration); the service range is the
// cluster's (it admits traffic to Services).
func (c *Cluster) startNetworkPolicies(nd *node) error {
	_, err := c.startProc(nd.procName(networkPoliciesName), nd.inNode(c.runtimeBin(networkPoliciesName),
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false", "--enable-cni=false",
		"--kubeconfig="+c.creds.kubeconfigs["admin"],
		"--hostname-override="+nd.name,
		"--service-cluster-ip-range="+serviceCIDR,
		"--v=1",
	), nil)
	return err
}

// waitNetworkPolicies waits until the controller on nd has hooked its chain into FORWARD: from
// then on, traffic a policy does not admit is rejected.
func (c *Cluster) waitNetworkPolicies(ctx context.Context, nd *node, timeout time.Duration) error {
	p := c.proc(nd.procName(networkPoliciesName))
	err := c.waitFor(ctx, timeout, "the network policy controller of "+nd.name, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("exited: %v", p.err)
		}
		argv := nd.inNode("iptables", "-w", "-t", "filter", "-S", "FORWARD")
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
		return err == nil && strings.Contains(string(out), "-j "+networkPoliciesChain), nil
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, p.tail(30))
	}
	return nil
}
