package realnode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// kubeletSysctls are the kernel settings the kubelet tunes at start (setupKernelTunables in
// pkg/kubelet/cm). They are global, not per namespace: in the node's mount namespace each file
// is covered with a copy, so the kubelet "tunes" the copy and the host keeps its settings.
var kubeletSysctls = []string{
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

// hostOverlays are the host directories the node's components write under whatever they were
// configured with: the kubelet's device plugin socket directory (/var/lib/kubelet/...) and its
// /var/log/containers symlinks, the CNI result cache (/var/lib/cni). In the node's mount
// namespace they are overlays with their upper layers in the run directory.
var hostOverlays = []string{"/var/lib", "/var/log"}

// node is one node of the cluster: its namespaces, addresses, directories and processes.
type node struct {
	index    int
	name     string // the Node object's name: realnode, realnode-2, ...
	dir      string // its state: the run directory itself for the first node, <run>/n<k> for the others
	ns       string // its network namespace, under /run/netns
	rootVeth string // its link to the root namespace, root side
	rootIP   string // the root side's address
	ip       string // the node side's: its InternalIP
	lanIP    string // its address on the outside network
	pods     podBlock

	serving    keyPair // the kubelet's serving certificate
	kubeconfig string  // the kubelet's kubeconfig (system:node:<name>)
	holder     *proc   // holds its mount namespace
}

// procName is the name of one of the node's components among the cluster's processes (and its
// log file): kubelet for the first node, kubelet-n2 for the second, ...
func (nd *node) procName(component string) string {
	if nd.index == 0 {
		return component
	}
	return fmt.Sprintf("%s-n%d", component, nd.index+1)
}

// nodeOf is the node called name, or nil.
func (c *Cluster) nodeOf(name string) *node {
	for _, nd := range c.nodes {
		if nd.name == name {
			return nd
		}
	}
	return nil
}

// startNodeNamespace starts the process that holds the node's mount namespace: it joins the node
// network namespace, makes a private (slave) mount namespace, mounts the overlays and sysctl
// copies, and sleeps. Every node component enters both namespaces of this process, so that the
// volumes the kubelet mounts are the ones containerd and runc see.
func (c *Cluster) startNodeNamespace(nd *node) error {
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, dir := range hostOverlays {
		base := filepath.Join(nd.dir, "host", strings.ReplaceAll(strings.Trim(dir, "/"), "/", "-"))
		upper, work := filepath.Join(base, "upper"), filepath.Join(base, "work")
		for _, d := range []string{upper, work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("node namespace: %w", err)
			}
		}
		fmt.Fprintf(&script, "mount -t overlay realnode-%s -o lowerdir=%s,upperdir=%s,workdir=%s %s\n",
			filepath.Base(dir), dir, upper, work, dir)
	}
	sysctlDir := filepath.Join(nd.dir, "host", "sysctl")
	if err := os.MkdirAll(sysctlDir, 0o755); err != nil {
		return fmt.Errorf("node namespace: %w", err)
	}
	for _, key := range kubeletSysctls {
		value, err := os.ReadFile(filepath.Join("/proc/sys", key))
		if err != nil {
			return fmt.Errorf("node namespace: read %s: %w", key, err)
		}
		copyPath := filepath.Join(sysctlDir, strings.ReplaceAll(key, "/", "."))
		if err := os.WriteFile(copyPath, value, 0o644); err != nil {
			return fmt.Errorf("node namespace: %w", err)
		}
		fmt.Fprintf(&script, "mount --bind %s /proc/sys/%s\n", copyPath, key)
	}
	script.WriteString("exec sleep infinity\n")
	p, err := c.startProc(nd.procName("node-namespace"), []string{
		"nsenter", "--net=" + c.net.nsPath(nd.ns), "--",
		"unshare", "--mount", "--propagation", "slave", "--",
		"sh", "-c", script.String(),
	}, nil)
	if err != nil {
		return err
	}
	// nsenter, unshare and sh each exec the next, so the PID is the sleeping holder's once the
	// mounts are done.
	deadline := time.Now().Add(10 * time.Second)
	for {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.pid()))
		if strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if p.exited() || time.Now().After(deadline) {
			return fmt.Errorf("node namespace holder did not come up: %v\n%s", p.err, p.tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	nd.holder = p
	return nil
}

// inNode is the command prefix that runs a program in the node's network and mount namespaces.
func (nd *node) inNode(argv ...string) []string {
	return append([]string{"nsenter", "--target=" + strconv.Itoa(nd.holder.pid()), "--mount", "--net", "--"}, argv...)
}

func (nd *node) containerdSocket() string { return filepath.Join(nd.dir, "ctd", "containerd.sock") }

func (c *Cluster) startContainerd(ctx context.Context, nd *node, sandboxImage string) error {
	ctd := filepath.Join(nd.dir, "ctd")
	cniConf := filepath.Join(nd.dir, "cni", "net.d")
	for _, d := range []string{ctd, cniConf} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("containerd: %w", err)
		}
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		return fmt.Errorf("containerd: runc not found (hack/install-test-deps.sh installs it as root): %w", err)
	}
	// Config version 4 (containerd 2.4): the server sockets are plugin sections now. With the
	// pre-v3 [grpc] section containerd silently listens on /run/containerd/containerd.sock.
	config := fmt.Sprintf(`version = 4
root = '%[1]s/root'
state = '%[1]s/state'
temp = '%[1]s/tmp'
imports = []
oom_score = 0
# NRI would open /var/run/nri/nri.sock; the other snapshotters are not used.
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.blockfile']

[plugins.'io.containerd.server.v1.grpc']
  address = '%[1]s/containerd.sock'
[plugins.'io.containerd.server.v1.ttrpc']
  address = '%[1]s/containerd.sock.ttrpc'
[plugins.'io.containerd.server.v1.debug']
  address = ''
[plugins.'io.containerd.server.v1.metrics']
  address = ''
[plugins.'io.containerd.internal.v1.opt']
  path = '%[1]s/opt'
[plugins.'io.containerd.image-verifier.v1.bindir']
  bin_dir = '%[1]s/image-verifier'
# Shim sockets default to /run/containerd/s whatever the state directory is (at most 42 bytes).
[plugins.'io.containerd.shim.v1.manager']
  socket_dir = '%[1]s/s'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '%[2]s'

[plugins.'io.containerd.cri.v1.runtime']
  # This VM has no CAP_SYS_RESOURCE: a negative OOM score makes runc fail with "can't get
  # final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not /run/netns.
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '%[3]s'
        Root = '%[1]s/runc'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['%[4]s']
    conf_dir = '%[5]s'
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`, ctd, sandboxImage, runc, cniBinDir, cniConf)
	configPath := filepath.Join(c.dir, "config", nd.procName("containerd")+".toml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return fmt.Errorf("containerd: write config: %w", err)
	}
	if err := nd.writeCNIConfig(cniConf); err != nil {
		return err
	}
	p, err := c.startProc(nd.procName("containerd"), nd.inNode(c.runtimeBin("containerd"), "--config="+configPath, "--log-level=info"),
		// The shim is found on PATH next to containerd.
		[]string{"PATH=" + c.runtimeDir + ":" + os.Getenv("PATH")})
	if err != nil {
		return err
	}
	// Ready when the CRI plugin answers through ctr (plugins ls lists it with status ok).
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.ctr(ctx, nd, "plugins", "ls")
		if err == nil && strings.Contains(out, "io.containerd.grpc.v1") && strings.Contains(out, "cri") {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("containerd exited: %v\n%s", p.err, p.tail(30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd not serving after 30s: %v\n%s", err, p.tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cniBinDir is where Debian's containernetworking-plugins installs the plugins.
const cniBinDir = "/usr/lib/cni"

func (nd *node) writeCNIConfig(dir string) error {
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "realnode",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "rangeStart": %q, "rangeEnd": %q, "gateway": %q}]]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, filepath.Join(nd.dir, "cni", "ipam"), nd.pods.cidr, nd.pods.first, nd.pods.last, nd.pods.gateway)
	if err := os.WriteFile(filepath.Join(dir, "10-realnode.conflist"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write CNI config: %w", err)
	}
	return nil
}

// ctr runs ctr against a node's containerd in the k8s.io namespace (the CRI's).
func (c *Cluster) ctr(ctx context.Context, nd *node, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	argv := append([]string{"--address", nd.containerdSocket(), "--namespace", "k8s.io"}, args...)
	out, err := exec.CommandContext(cctx, c.runtimeBin("ctr"), argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// cgroupRoot is where a node's kubelet puts its kubepods tree, in every cgroup hierarchy: a name
// of this run, so two clusters (or a dead one's leftovers) never share pod cgroups, and below it
// one per further node.
func (c *Cluster) cgroupRoot(nd *node) string {
	if nd.index == 0 {
		return "/" + c.id
	}
	return fmt.Sprintf("/%s/n%d", c.id, nd.index+1)
}

func (nd *node) podLogsDir() string { return filepath.Join(nd.dir, "pod-logs") }

func (c *Cluster) startKubelet(nd *node) error {
	kdir := filepath.Join(nd.dir, "kubelet")
	for _, d := range []string{kdir, nd.podLogsDir(), filepath.Join(nd.dir, "volume-plugins")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("kubelet: %w", err)
		}
	}
	// The kubelet refuses a cgroup root that does not exist in the hierarchies it checks.
	if err := makeCgroups(c.cgroupRoot(nd)); err != nil {
		return fmt.Errorf("kubelet: %w", err)
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %[2]s
tlsPrivateKeyFile: %[3]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[4]s}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://%[5]s
cgroupDriver: cgroupfs
cgroupRoot: %[6]s
# v1.37 refuses cgroup v1 unless told otherwise; this VM has v1 hierarchies (and v2 at
# /sys/fs/cgroup/unified).
failCgroupV1: false
failSwapOn: false
# The default -999 needs CAP_SYS_RESOURCE, which this VM does not give.
oomScoreAdj: 0
podLogsDir: %[7]s
volumePluginDir: %[8]s
clusterDomain: cluster.local
# A shared build machine: evict only when really short, and never for image space.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
registerNode: true
shutdownGracePeriod: 0s
`, nd.ip, nd.serving.certFile, nd.serving.keyFile, c.creds.pki.caFile,
		nd.containerdSocket(), c.cgroupRoot(nd), nd.podLogsDir(), filepath.Join(nd.dir, "volume-plugins"))
	path := filepath.Join(c.dir, "config", nd.procName("kubelet")+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("kubelet: write config: %w", err)
	}
	_, err := c.startProc(nd.procName("kubelet"), nd.inNode(c.bin("kubelet"),
		"--config="+path,
		"--kubeconfig="+nd.kubeconfig,
		"--root-dir="+kdir,
		"--cert-dir="+filepath.Join(kdir, "pki"),
		"--hostname-override="+nd.name,
		"--node-ip="+nd.ip,
		"--v=1",
	), nil)
	return err
}

func (c *Cluster) startKubeProxy(nd *node) error {
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: %[1]s
hostnameOverride: %[2]s
clusterCIDR: %[3]s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Leave the kernel's conntrack settings alone: they are not kube-proxy's to change on a shared
# machine (0 means "do not set").
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, c.creds.kubeconfigs["kube-proxy"], nd.name, podCIDR)
	path := filepath.Join(c.dir, "config", nd.procName("kube-proxy")+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("kube-proxy: write config: %w", err)
	}
	_, err := c.startProc(nd.procName("kube-proxy"), nd.inNode(c.bin("kube-proxy"), "--config="+path, "--v=1"), nil)
	return err
}
