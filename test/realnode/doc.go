// Package realnode starts a real single-node Kubernetes cluster on this machine, as root, for
// tests that need what test/harness only stands in for: the real kubelet running pods in
// containerd 2.4 with runc, the bridge CNI, kube-proxy in nftables mode, the real
// kube-controller-manager (Deployments, ReplicaSets, the PV binder, the garbage collector,
// service accounts) and kube-scheduler, around a kube-apiserver and etcd started here with our
// own flags and certificates and the project's CRDs installed.
//
// Only two parts of a cloud are stood in for, both as goroutines of the test process writing
// through the API server like a cloud controller would:
//
//   - the load balancer allocator (MetalLB's controller): every Service of type LoadBalancer
//     gets an address from 203.0.113.128/25 in status.loadBalancer.ingress. kube-proxy's own
//     nftables rules forward that address, as with MetalLB in L2 mode where the node owns the
//     address and kube-proxy does the rest; the outside client's route to the pool points at
//     the node.
//   - the storage provisioner (like local-path-provisioner): the default StorageClass
//     "realnode-local" (WaitForFirstConsumer) gets a local PersistentVolume for each claim the
//     scheduler placed on the node, in a directory under the run directory. The real PV
//     controller binds them and the kubelet mounts them. Local volumes honour fsGroup (the
//     kubelet chowns them to the pod's fsGroup on first mount, as on any real cluster); hostPath
//     volumes do not, which is why the provisioner makes local ones and never chowns anything.
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
// of 198.51.100.0/25 per cluster (slot k: .4k+1 here, .4k+2 on the node), picked free at start.
//
//	root namespace                    node netns (+ its own mount ns)              client netns
//	 etcd 127.0.0.1:random             kubelet, containerd, kube-proxy
//	 kube-apiserver :6443 on
//	 kube-controller-manager,
//	 kube-scheduler, this process
//	 frn<hex> 198.51.100.4k+1/30 ==veth== eth0 198.51.100.4k+2/30 (node IP)
//	                                   ext0 198.51.100.253/30 ========veth========= eth0 198.51.100.254/30
//	                                   cni0 192.0.2.1/24 (bridge CNI)                routes: 203.0.113.128/25
//	                                     |-- pods 192.0.2.10 - .239 (host-local)       and the node IP /32,
//	                                     `-- in-cluster client netns 192.0.2.250       both via 198.51.100.253
//
//	Service ClusterIPs      203.0.113.0/25   (kubernetes = 203.0.113.1 -> 198.51.100.4k+1:6443)
//	load balancer addresses 203.0.113.128/25 (handed out from .129; .250 is left for tests)
//
// What the plan guarantees:
//
//   - The client reaches only load balancer addresses and the node IP: it has no route to the
//     pod network, and the node rejects anything from ext0 toward pods that kube-proxy did not
//     DNAT.
//   - Services with externalTrafficPolicy Local are DNATed without SNAT, so pods see the
//     client's own address (198.51.100.254).
//   - Pod traffic leaving the node (toward the API server or the client) is masqueraded to the
//     node's address, as a node does for egress, so no 192.0.2.x packet ever reaches the root
//     namespace.
//   - The node namespace has no default route: nothing reaches the host's network.
//
// # Host state
//
// Everything lives in a run directory /tmp/ftprn-<pid>-<hex>. The node's processes share one
// mount namespace in which /var/lib and /var/log are overlays whose upper layers are in the
// run directory (the kubelet and the CNI write /var/lib/kubelet/device-plugins,
// /var/log/containers and /var/lib/cni regardless of their configured directories) and the six
// /proc/sys files the kubelet tunes (vm.overcommit_memory, kernel.panic, ...) are bind-mounted
// over with copies, so the host's kernel settings stay as they were. Pod cgroups live under
// /ftprn-<pid>-<hex> in every cgroup hierarchy. Stop removes all of it and Leftovers reports
// what is still there; Start first removes what a killed earlier run left (its process is gone).
package realnode
