// Package realnode starts a real Kubernetes cluster on this machine, as root, of one node or of
// several (Options.Nodes), for tests that need what test/harness only stands in for: the real
// kubelet running pods in containerd 2.4 with runc, the bridge CNI, kube-proxy in nftables
// mode, the real kube-controller-manager (Deployments, ReplicaSets, StatefulSets, the PV
// binder, the garbage collector, service accounts) and kube-scheduler, around a kube-apiserver
// and etcd started here with our own flags and certificates and the project's CRDs installed.
// Each node is a kubelet, a containerd and a kube-proxy in a network namespace and a mount
// namespace of its own; with Options.NetworkPolicies also kube-router's network policy
// controller, which enforces NetworkPolicies (the bridge CNI has no policy engine).
//
// Only two parts of a cloud are stood in for, both as goroutines of the test process writing
// through the API server like a cloud controller would:
//
//   - the load balancer (MetalLB's controller, and with several nodes the network in front of
//     them): every Service of type LoadBalancer gets an address from 203.0.113.128/25 in
//     status.loadBalancer.ingress. kube-proxy's own nftables rules forward that address, as
//     with MetalLB where the network delivers the address to a node and kube-proxy does the
//     rest. With one node the outside client's route to the pool points at it. With several,
//     each new connection goes to one of the nodes that pass the health check a cloud load
//     balancer uses (kube-proxy's answer on the Service's healthCheckNodePort for
//     externalTrafficPolicy Local; every node for Cluster) and stays there for its life
//     (routeLoadBalancers).
//   - the storage provisioner (like local-path-provisioner): the default StorageClass
//     "realnode-local" (WaitForFirstConsumer) gets a local PersistentVolume for each claim the
//     scheduler placed on a node, in a directory under the run directory. The real PV
//     controller binds them and the kubelet mounts them. A ReadWriteMany claim's volume may be
//     mounted on every node: the directory is on the machine's file system, which all the
//     nodes' mount namespaces see, as they would see a network file system. Local volumes
//     honour fsGroup (the kubelet chowns them to the pod's fsGroup on first mount, as on any
//     real cluster); hostPath volumes do not, which is why the provisioner makes local ones and
//     never chowns anything.
//
// Images come from OCI archives (internal/ociimage) imported with `ctr -n k8s.io images
// import`; nothing is pulled. The sandbox image is hack/pause, written by hack/image as `make
// pause-image` does, and pinned in containerd's config; BuildOperatorImage writes our own image
// as `make image` does.
//
// # Address plan
//
// Only documentation ranges (RFC 5737). The host's own eth0 sits on 192.0.2.0/24, so that
// range lives only inside namespaces this package creates; the root namespace gets one /30
// of 198.51.100.0/25 per node of each cluster (slot k: .4k+1 here, .4k+2 on the node), picked
// free at start. The API server listens on the first node's slot.
//
//	root namespace                  node netns (+ its own mount ns), one per node        client netns
//	 etcd 127.0.0.1:random           kubelet, containerd, kube-proxy
//	 kube-apiserver :6443 on
//	 the first node's slot,
//	 kube-controller-manager,
//	 kube-scheduler, this process
//	 frn<hex>[-N] 198.51.100.4k+1/30 ==veth== eth0 198.51.100.4k+2/30 (node IP)
//	                                 ext0 198.51.100.253-i/28 ===veth=== nN --+
//	                                 cni0: the node's pod block (bridge CNI)     lan0 bridge, 198.51.100.254/28
//	                                   |-- pods (host-local)                     routes: 203.0.113.128/25 and
//	                                   `-- in-cluster client netns (node 1)      each node IP /32 via the nodes
//
//	pod blocks (192.0.2.0/24 cut per node): one node: 192.0.2.0/24, pods .10 - .239, in-cluster
//	client .250; two: 192.0.2.0/25 and 192.0.2.128/25 (pods .10 - .111 and .138 - .239, client
//	.122); each node routes the others' blocks via their ext0 address.
//	Service ClusterIPs      203.0.113.0/25   (kubernetes = 203.0.113.1 -> the API server :6443)
//	load balancer addresses 203.0.113.128/25 (handed out from .129; .250 is left for tests)
//
// What the plan guarantees:
//
//   - The client reaches only load balancer addresses and the node IPs: it has no route to the
//     pod network, and a node rejects anything from the outside network toward pods that
//     kube-proxy did not DNAT or that does not come from another node.
//   - Services with externalTrafficPolicy Local are DNATed without SNAT, so pods see the
//     client's own address (198.51.100.254).
//   - Pod traffic leaving a node (toward the API server or the client) is masqueraded to the
//     node's address, as a node does for egress, so no 192.0.2.x packet ever reaches the root
//     namespace; pod to pod across nodes keeps its addresses.
//   - The node namespaces have no default route: nothing reaches the host's network.
//
// # Host state
//
// Everything lives in a run directory /tmp/ftprn-<pid>-<hex> (further nodes' state in n2/, n3/,
// ... of it). Each node's processes share one mount namespace in which /var/lib and /var/log
// are overlays whose upper layers are in the run directory (the kubelet and the CNI write
// /var/lib/kubelet/device-plugins, /var/log/containers and /var/lib/cni regardless of their
// configured directories) and the six /proc/sys files the kubelet tunes (vm.overcommit_memory,
// kernel.panic, ...) are bind-mounted over with copies, so the host's kernel settings stay as
// they were. Pod cgroups live under /ftprn-<pid>-<hex> in every cgroup hierarchy (a further
// node's under /ftprn-<pid>-<hex>/nN). Stop removes all of it and Leftovers reports what is
// still there; Start first removes what a killed earlier run left (its process is gone).
package realnode
