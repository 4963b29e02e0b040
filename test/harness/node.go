package harness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// node stands in for the kubelet (and the Deployment controller): it runs the pods that the
// operator's Deployments describe as local processes of the real binary, materialises their
// ConfigMap, Secret, claim and emptyDir volumes, keeps ConfigMap and Secret volumes current the
// way the kubelet does, probes readiness, reports Deployment status, and stops pods with
// SIGTERM and the pod's grace period.
type node struct {
	h *Harness

	mu      sync.Mutex
	pods    map[types.NamespacedName]*pod // by Deployment
	counter int
	// lastExit of each Deployment's most recent pod: how it ended and where its log is.
	lastExit map[types.NamespacedName]PodExit
	// backoff delays restarting a pod that exited, like the kubelet's CrashLoopBackOff.
	backoff map[types.NamespacedName]crashBackoff
	// stopping counts pods being stopped in the background (their Deployment is gone).
	stopping sync.WaitGroup
}

type crashBackoff struct {
	until time.Time
	delay time.Duration
}

// pod is one running daemon process.
type pod struct {
	name        string
	deployment  types.NamespacedName
	hash        string // of the Deployment's pod template
	ip          string
	labels      map[string]string
	dir         string
	opsPort     int32
	grace       time.Duration
	syncVolumes func(ctx context.Context) error

	proc    *os.Process
	done    chan struct{}
	ready   atomic.Bool
	stopped atomic.Bool
}

func newNode(h *Harness) *node {
	return &node{h: h, pods: map[types.NamespacedName]*pod{}, backoff: map[types.NamespacedName]crashBackoff{}, lastExit: map[types.NamespacedName]PodExit{}}
}

// run syncs pods with Deployments until ctx ends, then stops every pod.
func (n *node) run(ctx context.Context) {
	n.h.poll(ctx, 250*time.Millisecond, "node", n.sync)
	n.stopAll()
}

func (n *node) sync(ctx context.Context) error {
	var deps appsv1.DeploymentList
	if err := n.h.Client.List(ctx, &deps); err != nil {
		return fmt.Errorf("list deployments: %w", err)
	}
	seen := map[types.NamespacedName]bool{}
	for i := range deps.Items {
		d := &deps.Items[i]
		key := types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
		seen[key] = true
		if err := n.syncDeployment(ctx, d); err != nil {
			n.h.logf("node: deployment %s: %v", key, err)
		}
	}
	n.mu.Lock()
	var orphans []*pod
	for key, p := range n.pods {
		if !seen[key] {
			orphans = append(orphans, p)
			delete(n.pods, key)
		}
	}
	n.mu.Unlock()
	for _, p := range orphans {
		n.stopping.Add(1)
		go func() { defer n.stopping.Done(); n.stop(p) }() // the Deployment is gone: drain and stop, like a deleted pod
	}
	return nil
}

func (n *node) syncDeployment(ctx context.Context, d *appsv1.Deployment) error {
	key := types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
	hash := templateHash(&d.Spec.Template)
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}

	n.mu.Lock()
	p := n.pods[key]
	n.mu.Unlock()

	switch {
	case p != nil && p.exited():
		n.forget(key, p)
		n.mu.Lock()
		b := n.backoff[key]
		b.delay = min(max(2*b.delay, time.Second), 30*time.Second)
		b.until = time.Now().Add(b.delay)
		n.backoff[key] = b
		n.mu.Unlock()
		n.h.logf("node: pod %s exited; restarting in %s", p.name, b.delay)
		p = nil
	case p != nil && (p.hash != hash || want == 0):
		// Recreate: the old pod drains and stops before the new one starts (in loopback mode
		// two pods of a server would also collide on their ports).
		n.forget(key, p)
		n.stop(p)
		p = nil
	}
	n.mu.Lock()
	waiting := time.Now().Before(n.backoff[key].until)
	n.mu.Unlock()
	if p == nil && want > 0 && !waiting {
		started, err := n.start(ctx, d, hash)
		if err != nil {
			return n.report(ctx, d, nil, err)
		}
		p = started
	}
	if p != nil {
		if err := p.syncVolumes(ctx); err != nil {
			n.h.logf("node: pod %s volumes: %v", p.name, err)
		}
	}
	return n.report(ctx, d, p, nil)
}

func (n *node) forget(key types.NamespacedName, p *pod) {
	n.mu.Lock()
	if n.pods[key] == p {
		delete(n.pods, key)
	}
	n.mu.Unlock()
}

// report writes the Deployment status the Deployment controller would, from the pod's state.
func (n *node) report(ctx context.Context, d *appsv1.Deployment, p *pod, startErr error) error {
	st := appsv1.DeploymentStatus{ObservedGeneration: d.Generation}
	if p != nil {
		st.Replicas, st.UpdatedReplicas = 1, 1
		if p.ready.Load() {
			st.ReadyReplicas, st.AvailableReplicas = 1, 1
		} else {
			st.UnavailableReplicas = 1
		}
	}
	if equality.Semantic.DeepEqual(st, d.Status) {
		return startErr
	}
	updated := d.DeepCopy()
	updated.Status = st
	if err := n.h.Client.Status().Update(ctx, updated); err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	return startErr
}

// start materialises the volumes and starts the daemon process.
func (n *node) start(ctx context.Context, d *appsv1.Deployment, hash string) (*pod, error) {
	spec := d.Spec.Template.Spec
	if len(spec.Containers) == 0 {
		return nil, fmt.Errorf("pod template has no container")
	}
	c := spec.Containers[0]

	n.mu.Lock()
	n.counter++
	id := n.counter
	n.mu.Unlock()
	name := fmt.Sprintf("%s-%d", d.Name, id)
	dir := filepath.Join(n.h.workDir, "pods", d.Namespace+"_"+name)
	ip, netnsWrap, err := n.h.network.podAddress(name)
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			n.h.network.releasePod(name) // the pod stays pending; its next attempt gets a new one
		}
	}()
	p := &pod{
		name: name, deployment: types.NamespacedName{Namespace: d.Namespace, Name: d.Name}, hash: hash,
		ip: ip, labels: d.Spec.Template.Labels, dir: dir,
		grace: 30 * time.Second, done: make(chan struct{}),
	}
	if spec.TerminationGracePeriodSeconds != nil {
		p.grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	for _, port := range c.Ports {
		if port.Name == "ops" {
			p.opsPort = port.ContainerPort
		}
	}

	volumeDirs, syncVolumes, err := n.volumes(ctx, d.Namespace, dir, spec.Volumes)
	if err != nil {
		return nil, err // e.g. a claim that does not exist yet: the pod stays pending
	}
	p.syncVolumes = syncVolumes
	if err := syncVolumes(ctx); err != nil {
		return nil, err
	}

	var mounts []mount
	for _, vm := range c.VolumeMounts {
		host, ok := volumeDirs[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volume mount %q names no volume", vm.Name)
		}
		mounts = append(mounts, mount{hostPath: filepath.Join(host, vm.SubPath), podPath: vm.MountPath, readOnly: vm.ReadOnly})
	}
	env := []string{"PATH=/bin"}
	for _, e := range c.Env {
		value := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			switch e.ValueFrom.FieldRef.FieldPath {
			case "status.podIP":
				value = ip
			case "metadata.name":
				value = name
			case "metadata.namespace":
				value = d.Namespace
			}
		}
		env = append(env, e.Name+"="+value)
	}

	rootDir := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootDir, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return nil, err
	}
	cmd := sandboxCommand(n.h.binary, rootDir, mounts, c.Args, env, netnsWrap)
	cmd.Stdout = io.MultiWriter(logFile, n.h.podLog(name))
	cmd.Stderr = cmd.Stdout
	// Own process group, so Ctrl-C on the harness reaches the pod only through our SIGTERM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start pod %s: %w", name, err)
	}
	p.proc = cmd.Process
	started = true
	go func() {
		err := cmd.Wait()
		logFile.Close()
		n.h.logf("node: pod %s exited (%v)", name, exitText(err))
		n.mu.Lock()
		n.lastExit[p.deployment] = PodExit{Pod: name, Status: exitText(err), LogPath: filepath.Join(dir, "log")}
		n.mu.Unlock()
		// The pod's network goes with it, whether it was stopped or crashed.
		n.h.network.releasePod(name)
		close(p.done)
	}()
	go n.probe(p)

	n.mu.Lock()
	n.pods[p.deployment] = p
	n.mu.Unlock()
	n.h.logf("node: started pod %s (ip %s) for Deployment %s", name, ip, p.deployment)
	return p, nil
}

// volumes prepares a host directory per pod volume and returns a function that refreshes the
// ConfigMap and Secret ones from the API, as the kubelet's periodic sync does.
func (n *node) volumes(ctx context.Context, ns, podDir string, vols []corev1.Volume) (map[string]string, func(context.Context) error, error) {
	dirs := map[string]string{}
	var refreshers []func(context.Context) error
	for _, v := range vols {
		switch {
		case v.ConfigMap != nil, v.Secret != nil:
			dir := filepath.Join(podDir, "volumes", v.Name)
			dirs[v.Name] = dir
			read, items := n.volumeSource(ns, v)
			refreshers = append(refreshers, func(ctx context.Context) error {
				data, err := read(ctx)
				if err != nil {
					return err
				}
				_, err = writeAtomicDir(dir, project(data, items))
				return err
			})
		case v.PersistentVolumeClaim != nil:
			var pvc corev1.PersistentVolumeClaim
			if err := n.h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: v.PersistentVolumeClaim.ClaimName}, &pvc); err != nil {
				return nil, nil, fmt.Errorf("claim %s: %w", v.PersistentVolumeClaim.ClaimName, err)
			}
			dir := n.h.ClaimPath(ns, pvc.Name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, nil, err
			}
			dirs[v.Name] = dir
		case v.EmptyDir != nil:
			dir := filepath.Join(podDir, "volumes", v.Name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, nil, err
			}
			dirs[v.Name] = dir
		default:
			return nil, nil, fmt.Errorf("volume %q: the harness supports configMap, secret, persistentVolumeClaim and emptyDir", v.Name)
		}
	}
	return dirs, func(ctx context.Context) error {
		for _, r := range refreshers {
			if err := r(ctx); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// volumeSource reads the current content of a ConfigMap or Secret volume, as files by key.
func (n *node) volumeSource(ns string, v corev1.Volume) (read func(context.Context) (map[string][]byte, error), items []corev1.KeyToPath) {
	if src := v.ConfigMap; src != nil {
		return func(ctx context.Context) (map[string][]byte, error) {
			var cm corev1.ConfigMap
			if err := n.h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: src.Name}, &cm); err != nil {
				return nil, fmt.Errorf("configMap volume %s: %w", src.Name, err)
			}
			files := map[string][]byte{}
			for k, val := range cm.Data {
				files[k] = []byte(val)
			}
			return files, nil
		}, src.Items
	}
	src := v.Secret
	return func(ctx context.Context) (map[string][]byte, error) {
		var s corev1.Secret
		if err := n.h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: src.SecretName}, &s); err != nil {
			return nil, fmt.Errorf("secret volume %s: %w", src.SecretName, err)
		}
		return s.Data, nil
	}, src.Items
}

// project applies a volume's items list (key -> path), or keeps every key.
func project(data map[string][]byte, items []corev1.KeyToPath) map[string][]byte {
	if len(items) == 0 {
		return data
	}
	out := map[string][]byte{}
	for _, it := range items {
		if v, ok := data[it.Key]; ok {
			out[it.Path] = v
		}
	}
	return out
}

// probe polls the daemon's readiness endpoint like the kubelet's readiness probe.
func (n *node) probe(p *pod) {
	if p.opsPort == 0 {
		n.setReady(p, true)
		return
	}
	// The kubelet probes from the node, which reaches the pod network: in namespace mode
	// that is the router's namespace, not the harness's own.
	httpc := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return n.h.network.dialContext(ctx, roleNode, network, addr)
		},
	}}
	url := "http://" + joinHostPort(p.ip, p.opsPort) + "/readyz"
	for {
		select {
		case <-p.done:
			n.setReady(p, false)
			return
		case <-time.After(300 * time.Millisecond):
		}
		resp, err := httpc.Get(url)
		ok := err == nil && resp.StatusCode == http.StatusOK
		if resp != nil {
			resp.Body.Close()
		}
		n.setReady(p, ok && !p.stopped.Load())
	}
}

// setReady records a pod's readiness and tells the network when it changes, as the
// EndpointSlice controller and kube-proxy would.
func (n *node) setReady(p *pod, ready bool) {
	if p.ready.Swap(ready) != ready {
		n.h.network.endpointsChanged()
	}
}

// stop sends SIGTERM and waits for the pod's grace period before SIGKILL.
func (n *node) stop(p *pod) {
	if !p.stopped.CompareAndSwap(false, true) {
		<-p.done
		return
	}
	n.setReady(p, false)
	n.h.logf("node: stopping pod %s (SIGTERM, grace %s)", p.name, p.grace)
	_ = p.proc.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(p.grace):
		n.h.logf("node: pod %s outlived its grace period; SIGKILL", p.name)
		_ = p.proc.Kill()
		<-p.done
	}
}

func (n *node) stopAll() {
	n.mu.Lock()
	pods := make([]*pod, 0, len(n.pods))
	for _, p := range n.pods {
		pods = append(pods, p)
	}
	n.pods = map[types.NamespacedName]*pod{}
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		go func() { defer wg.Done(); n.stop(p) }()
	}
	wg.Wait()
	n.stopping.Wait()
}

// readyPod returns the ready pod whose labels match selector, if any.
func (n *node) readyPod(ns string, selector map[string]string) *pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	for key, p := range n.pods {
		if key.Namespace != ns || !p.ready.Load() {
			continue
		}
		if matches(selector, p.labels) {
			return p
		}
	}
	return nil
}

// podFor returns the current pod of a Deployment (ready or not).
func (n *node) podFor(ns, deployment string) *pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pods[types.NamespacedName{Namespace: ns, Name: deployment}]
}

// PodExit is how a pod ended.
type PodExit struct {
	Pod     string
	Status  string // "exit status 0", "signal: killed", ...
	LogPath string
}

func (p *pod) exited() bool {
	select {
	case <-p.done:
		return !p.stopped.Load()
	default:
		return false
	}
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func templateHash(t *corev1.PodTemplateSpec) string {
	data, _ := json.Marshal(t)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

func joinHostPort(ip string, port int32) string {
	return ip + ":" + strconv.Itoa(int(port))
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
