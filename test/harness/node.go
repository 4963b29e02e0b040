package harness

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NodeName is the name of the harness's one Node.
const NodeName = "harness-node"

// NodeImage is the one image the node has: the real binary under test, which the operator runs
// as its daemon image. Any other image "cannot be pulled", as on a node without a registry.
const NodeImage = "local/ftp-operator:harness"

const (
	// nodeLeaseRenewal is how often the stand-in renews its Lease, as the kubelet does (10 s),
	// so the real node lifecycle controller keeps the node Ready.
	nodeLeaseRenewal = 10 * time.Second
	// volumeResync is the stand-in's periodic refresh of ConfigMap and Secret volumes: the
	// kubelet rewrites them on its pod sync, every syncFrequency (1 min) plus jitter, and at
	// once when the pod object changes. The stand-in keeps that shape at a tenth of the pace.
	volumeResync = 6 * time.Second
)

// node stands in for the kubelet and the container runtime, and only for them: the real
// kube-controller-manager turns Deployments into ReplicaSets and Pods (and collects garbage,
// binds claims, publishes EndpointSlices), the real kube-scheduler binds the Pods to this node.
// The stand-in registers the Node, renews its Lease, runs each Pod bound to it as a local
// process of the real binary, materialises its volumes (ConfigMap and Secret volumes refreshed
// on each pod update and every volumeResync, claims from the hostPath of their bound
// PersistentVolume), probes readiness, restarts crashed containers with back-off, reports Pod
// status, and stops deleted Pods with SIGTERM and their grace period before removing them.
type node struct {
	h *Harness

	mu   sync.Mutex
	pods map[types.UID]*pod
	// lastExit of each Deployment's most recent container exit: how it ended, where its log is.
	lastExit map[types.NamespacedName]PodExit
	// stopping counts pods being stopped in the background.
	stopping sync.WaitGroup
	// leaseRenewed is when the Lease was last renewed.
	leaseRenewed time.Time
}

// pod is one Pod bound to the node, with its (at most one) running container process.
type pod struct {
	uid        types.UID
	name       string
	namespace  string
	deployment types.NamespacedName // the owning Deployment, through its ReplicaSet
	ip         string
	netnsWrap  []string
	labels     map[string]string
	dir        string
	opsPort    int32
	created    time.Time
	// logsOnError: the container asks for terminationMessagePolicy FallbackToLogsOnError.
	logsOnError bool

	// The container's life: restarts, back-off, the last exit.
	restarts     int32
	backoffDelay time.Duration
	backoffUntil time.Time
	lastExit     *corev1.ContainerStateTerminated
	waitReason   string // why the container is not running ("" while it runs)
	waitMessage  string

	// Volume refresh: the pod's resourceVersion at the last refresh, and when it happened.
	syncedVersion string
	syncedAt      time.Time
	syncVolumes   func(ctx context.Context) error

	proc      *os.Process
	started   time.Time
	done      chan struct{} // closed when the current process exits
	ready     atomic.Bool
	stopped   atomic.Bool // SIGTERM sent: the pod is being deleted
	finalized bool        // the Pod object has been removed
}

func newNode(h *Harness) *node {
	return &node{h: h, pods: map[types.UID]*pod{}, lastExit: map[types.NamespacedName]PodExit{}}
}

// run registers the node and syncs its pods until ctx ends, then stops every pod.
func (n *node) run(ctx context.Context) {
	n.h.syncEvery(ctx, 250*time.Millisecond, "node", n.sync)
	n.stopAll()
}

// register creates the Node object with what the scheduler needs (capacity, Ready) and what
// `kubectl get nodes -o wide` shows.
func (n *node) register(ctx context.Context) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	nodeObj := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: NodeName, Labels: map[string]string{
			corev1.LabelHostname: NodeName, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64",
		}},
	}
	if err := n.h.Client.Create(ctx, nodeObj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("register node: %w", err)
	}
	now := metav1.Now()
	nodeObj.Status = corev1.NodeStatus{
		Capacity: capacity, Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "the harness's stand-in kubelet is ready", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.h.network.nodeAddress()}, {Type: corev1.NodeHostName, Address: NodeName}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: "stand-in", ContainerRuntimeVersion: "harness://local-process",
			OperatingSystem: "linux", Architecture: "amd64", OSImage: "ftp-operator test harness",
		},
	}
	if err := n.h.Client.Status().Update(ctx, nodeObj); err != nil {
		return fmt.Errorf("report node status: %w", err)
	}
	return n.renewLease(ctx)
}

// renewLease keeps the node alive for the node lifecycle controller.
func (n *node) renewLease(ctx context.Context) error {
	if time.Since(n.leaseRenewed) < nodeLeaseRenewal {
		return nil
	}
	now := metav1.NewMicroTime(time.Now())
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: NodeName, Namespace: corev1.NamespaceNodeLease}}
	err := n.h.Client.Get(ctx, client.ObjectKeyFromObject(lease), lease)
	switch {
	case apierrors.IsNotFound(err):
		lease.Spec = coordinationv1.LeaseSpec{HolderIdentity: ptr.To(NodeName), LeaseDurationSeconds: ptr.To(int32(40)), RenewTime: &now}
		err = n.h.Client.Create(ctx, lease)
	case err == nil:
		lease.Spec.RenewTime = &now
		err = n.h.Client.Update(ctx, lease)
	}
	if err != nil {
		return fmt.Errorf("renew node lease: %w", err)
	}
	n.leaseRenewed = time.Now()
	return nil
}

func (n *node) sync(ctx context.Context) error {
	if err := n.renewLease(ctx); err != nil {
		return err
	}
	var list corev1.PodList
	if err := n.h.Client.List(ctx, &list, client.MatchingFields{"spec.nodeName": NodeName}); err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	seen := map[types.UID]bool{}
	for i := range list.Items {
		obj := &list.Items[i]
		seen[obj.UID] = true
		if err := n.syncPod(ctx, obj); err != nil && ctx.Err() == nil {
			n.h.logf("node: pod %s/%s: %v", obj.Namespace, obj.Name, err)
		}
	}
	// A pod removed from the API without us (a forced delete) is stopped at once.
	n.mu.Lock()
	var gone []*pod
	for uid, p := range n.pods {
		if !seen[uid] {
			gone = append(gone, p)
			delete(n.pods, uid)
		}
	}
	n.mu.Unlock()
	for _, p := range gone {
		n.stopping.Add(1)
		go func() { defer n.stopping.Done(); n.stop(p, 0); n.h.network.releasePod(p.name) }()
	}
	return nil
}

func (n *node) syncPod(ctx context.Context, obj *corev1.Pod) error {
	if obj.Status.Phase == corev1.PodSucceeded || obj.Status.Phase == corev1.PodFailed {
		return nil
	}
	n.mu.Lock()
	p := n.pods[obj.UID]
	n.mu.Unlock()

	if obj.DeletionTimestamp != nil {
		return n.terminate(ctx, obj, p)
	}
	if p == nil {
		var err error
		if p, err = n.admit(obj); err != nil {
			return err
		}
	}
	if p.proc != nil && p.exited() {
		n.containerExited(p)
	}
	if p.proc == nil && time.Now().After(p.backoffUntil) && n.pullImage(obj, p) {
		if err := n.startContainer(ctx, obj, p); err != nil {
			p.waitReason, p.waitMessage = "CreateContainerError", err.Error()
			p.backoffUntil = time.Now().Add(time.Second)
		}
	}
	if p.proc != nil && !p.exited() && p.syncVolumes != nil &&
		(obj.ResourceVersion != p.syncedVersion || time.Since(p.syncedAt) > volumeResync) {
		// As the kubelet: an update of the pod object (a new annotation, say) makes its next sync
		// rewrite the ConfigMap and Secret volumes at once; otherwise the periodic sync does.
		if err := p.syncVolumes(ctx); err != nil {
			n.h.logf("node: pod %s volumes: %v", p.name, err)
		}
		p.syncedVersion, p.syncedAt = obj.ResourceVersion, time.Now().Add(time.Duration(rand.Int64N(int64(time.Second))))
	}
	return n.reportStatus(ctx, obj, p)
}

// admit takes a newly bound pod: its network address and directory.
func (n *node) admit(obj *corev1.Pod) (*pod, error) {
	ip, wrap, err := n.h.network.podAddress(obj.Name)
	if err != nil {
		return nil, fmt.Errorf("pod network: %w", err)
	}
	p := &pod{
		uid: obj.UID, name: obj.Name, namespace: obj.Namespace, deployment: deploymentOf(obj),
		ip: ip, netnsWrap: wrap, labels: obj.Labels, created: time.Now(),
		dir: filepath.Join(n.h.workDir, "pods", obj.Namespace+"_"+obj.Name),
	}
	if len(obj.Spec.Containers) > 0 {
		p.logsOnError = obj.Spec.Containers[0].TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError
	}
	for _, c := range obj.Spec.Containers {
		for _, port := range c.Ports {
			if port.Name == "ops" {
				p.opsPort = port.ContainerPort
			}
		}
	}
	n.mu.Lock()
	n.pods[obj.UID] = p
	n.mu.Unlock()
	n.h.logf("node: admitted pod %s/%s (ip %s)", obj.Namespace, obj.Name, ip)
	return p, nil
}

// deploymentOf names the Deployment a pod belongs to: its ReplicaSet's name without the
// pod-template-hash suffix.
func deploymentOf(obj *corev1.Pod) types.NamespacedName {
	for _, ref := range obj.OwnerReferences {
		if ref.Kind == "ReplicaSet" {
			return types.NamespacedName{Namespace: obj.Namespace, Name: strings.TrimSuffix(ref.Name, "-"+obj.Labels["pod-template-hash"])}
		}
	}
	return types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}
}

// pullImage stands in for the runtime's image pull: only NodeImage is there. A pull of anything
// else fails, first as ErrImagePull, then as ImagePullBackOff, as the kubelet reports it.
func (n *node) pullImage(obj *corev1.Pod, p *pod) bool {
	image := obj.Spec.Containers[0].Image
	if image == NodeImage {
		return true
	}
	p.waitReason, p.waitMessage = "ErrImagePull", fmt.Sprintf("failed to pull image %q: the harness node has only %s and no registry", image, NodeImage)
	if p.backoffDelay > 0 {
		p.waitReason = "ImagePullBackOff"
		p.waitMessage = fmt.Sprintf("Back-off pulling image %q", image)
	}
	p.backoffDelay = min(max(2*p.backoffDelay, time.Second), 30*time.Second)
	p.backoffUntil = time.Now().Add(p.backoffDelay)
	return false
}

// containerExited records a crash and schedules the restart with the kubelet's back-off
// (10 s doubling to 5 min there; 1 s doubling to 30 s here, so tests see it).
func (n *node) containerExited(p *pod) {
	n.mu.Lock()
	exit := n.lastExit[p.deployment]
	n.mu.Unlock()
	p.lastExit = &corev1.ContainerStateTerminated{
		ExitCode: int32(exitCodeOf(exit.Status)), Reason: "Error", Message: exit.Status,
		StartedAt: metav1.NewTime(p.started), FinishedAt: metav1.Now(),
	}
	if p.logsOnError {
		// terminationMessagePolicy FallbackToLogsOnError: the kubelet puts the log's tail in
		// the termination message of a failed container.
		p.lastExit.Message = logTail(exit.LogPath, 3, 1024)
	}
	p.proc = nil
	p.restarts++
	p.backoffDelay = min(max(2*p.backoffDelay, time.Second), 30*time.Second)
	p.backoffUntil = time.Now().Add(p.backoffDelay)
	p.waitReason = "CrashLoopBackOff"
	p.waitMessage = fmt.Sprintf("back-off %s restarting failed container (%s)", p.backoffDelay, exit.Status)
	n.h.logf("node: pod %s exited (%s); restarting in %s", p.name, exit.Status, p.backoffDelay)
}

// logTail is the last lines of a log file, at most maxBytes.
func logTail(path string, lines, maxBytes int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	text := strings.TrimRight(string(data), "\n")
	parts := strings.Split(text, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	tail := strings.Join(parts, "\n")
	if len(tail) > maxBytes {
		tail = tail[len(tail)-maxBytes:]
	}
	return tail
}

func exitCodeOf(status string) int {
	if code, ok := strings.CutPrefix(status, "exit status "); ok {
		c, _ := strconv.Atoi(code)
		return c
	}
	return 137 // killed by a signal
}

// terminate stops a deleted pod's container within its grace period, then removes the Pod
// object, as the kubelet does once the container is gone.
func (n *node) terminate(ctx context.Context, obj *corev1.Pod, p *pod) error {
	if p != nil && !p.stopped.Load() {
		grace := 30 * time.Second
		if obj.DeletionGracePeriodSeconds != nil {
			grace = time.Duration(*obj.DeletionGracePeriodSeconds) * time.Second
		}
		n.stopping.Add(1)
		go func() { defer n.stopping.Done(); n.stop(p, grace) }()
		return n.reportStatus(ctx, obj, p)
	}
	if p != nil && p.proc != nil && !p.exited() {
		return nil // still draining
	}
	if p != nil && !p.finalized {
		p.finalized = true
		n.h.network.releasePod(p.name)
	}
	err := n.h.Client.Delete(ctx, obj, client.GracePeriodSeconds(0), client.Preconditions{UID: &obj.UID})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("remove terminated pod: %w", err)
	}
	n.mu.Lock()
	delete(n.pods, obj.UID)
	n.mu.Unlock()
	return nil
}

// reportStatus writes the Pod status the kubelet would, when it changed.
func (n *node) reportStatus(ctx context.Context, obj *corev1.Pod, p *pod) error {
	st := obj.Status.DeepCopy()
	running := p.proc != nil && !p.exited()
	ready := running && p.ready.Load() && !p.stopped.Load()
	st.Phase = corev1.PodRunning
	if !running && p.restarts == 0 {
		st.Phase = corev1.PodPending
	}
	st.HostIP, st.PodIP = n.h.network.nodeAddress(), p.ip
	st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	st.PodIPs = []corev1.PodIP{{IP: p.ip}}
	if st.StartTime == nil {
		st.StartTime = ptr.To(metav1.NewTime(p.created))
	}
	setPodCondition(st, corev1.PodInitialized, true)
	setPodCondition(st, corev1.PodReadyToStartContainers, true)
	setPodCondition(st, corev1.ContainersReady, ready)
	setPodCondition(st, corev1.PodReady, ready)

	st.ContainerStatuses = nil
	for i, c := range obj.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: "harness://" + c.Image, RestartCount: p.restarts}
		if i == 0 {
			cs.Ready = ready
			cs.Started = ptr.To(running)
			if p.lastExit != nil {
				cs.LastTerminationState.Terminated = p.lastExit
			}
			switch {
			case running:
				cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(p.started)}
			case p.waitReason != "":
				cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: p.waitReason, Message: p.waitMessage}
			default:
				cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
			}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	if equality.Semantic.DeepEqual(st, &obj.Status) {
		return nil
	}
	updated := obj.DeepCopy()
	updated.Status = *st
	if err := n.h.Client.Status().Update(ctx, updated); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // the next sync sees the new version
		}
		return fmt.Errorf("update pod status: %w", err)
	}
	return nil
}

// setPodCondition sets a condition, moving its transition time only when its status flips.
func setPodCondition(st *corev1.PodStatus, t corev1.PodConditionType, on bool) {
	status := corev1.ConditionFalse
	if on {
		status = corev1.ConditionTrue
	}
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			if st.Conditions[i].Status != status {
				st.Conditions[i].Status, st.Conditions[i].LastTransitionTime = status, metav1.Now()
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: status, LastTransitionTime: metav1.Now()})
	sort.Slice(st.Conditions, func(i, j int) bool { return st.Conditions[i].Type < st.Conditions[j].Type })
}

// startContainer materialises the volumes and starts the daemon process. A claim that is not
// bound yet, or a missing ConfigMap, leaves the container waiting, as the kubelet's volume
// manager would.
func (n *node) startContainer(ctx context.Context, obj *corev1.Pod, p *pod) error {
	spec := obj.Spec
	if len(spec.Containers) == 0 {
		return fmt.Errorf("pod has no container")
	}
	c := spec.Containers[0]
	volumeDirs, syncVolumes, err := n.volumes(ctx, obj.Namespace, p.dir, spec.Volumes)
	if err != nil {
		return err
	}
	if err := syncVolumes(ctx); err != nil {
		return err
	}
	p.syncVolumes, p.syncedVersion, p.syncedAt = syncVolumes, obj.ResourceVersion, time.Now()

	var mounts []mount
	for _, vm := range c.VolumeMounts {
		host, ok := volumeDirs[vm.Name]
		if !ok {
			return fmt.Errorf("volume mount %q names no volume", vm.Name)
		}
		mounts = append(mounts, mount{hostPath: filepath.Join(host, vm.SubPath), podPath: vm.MountPath, readOnly: vm.ReadOnly})
	}
	env := []string{"PATH=/bin"}
	for _, e := range c.Env {
		value := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			switch e.ValueFrom.FieldRef.FieldPath {
			case "status.podIP":
				value = p.ip
			case "metadata.name":
				value = obj.Name
			case "metadata.namespace":
				value = obj.Namespace
			}
		}
		env = append(env, e.Name+"="+value)
	}

	rootDir := filepath.Join(p.dir, "rootfs")
	if err := os.MkdirAll(rootDir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(p.dir, "log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := sandboxCommand(n.h.binary, rootDir, mounts, c.Args, env, p.netnsWrap)
	cmd.Stdout = io.MultiWriter(logFile, n.h.podLog(p.name))
	cmd.Stderr = cmd.Stdout
	// Own process group, so Ctrl-C on the harness reaches the pod only through our SIGTERM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start container of pod %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.proc, p.done, p.started = cmd.Process, done, time.Now()
	p.waitReason, p.waitMessage = "", ""
	p.ready.Store(false)
	go func() {
		err := cmd.Wait()
		logFile.Close()
		n.mu.Lock()
		n.lastExit[p.deployment] = PodExit{Pod: p.name, Status: exitText(err), LogPath: logPath}
		n.mu.Unlock()
		close(done)
	}()
	go n.probe(p, done)
	n.h.logf("node: started pod %s/%s (ip %s)", obj.Namespace, p.name, p.ip)
	return nil
}

// volumes prepares a host directory per pod volume and returns a function that refreshes the
// ConfigMap and Secret ones from the API, as the kubelet's pod sync does.
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
			dir, err := n.claimDir(ctx, ns, v.PersistentVolumeClaim.ClaimName)
			if err != nil {
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

// claimDir is the host directory of the PersistentVolume a claim is bound to.
func (n *node) claimDir(ctx context.Context, ns, claim string) (string, error) {
	var pvc corev1.PersistentVolumeClaim
	if err := n.h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: claim}, &pvc); err != nil {
		return "", fmt.Errorf("claim %s: %w", claim, err)
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return "", fmt.Errorf("claim %s is %s, not bound", claim, pvc.Status.Phase)
	}
	var pv corev1.PersistentVolume
	if err := n.h.Client.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, &pv); err != nil {
		return "", fmt.Errorf("volume %s of claim %s: %w", pvc.Spec.VolumeName, claim, err)
	}
	if pv.Spec.HostPath == nil {
		return "", fmt.Errorf("volume %s of claim %s is not a hostPath volume", pv.Name, claim)
	}
	return pv.Spec.HostPath.Path, nil
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

// probe polls the daemon's readiness endpoint like the kubelet's readiness probe, for the
// container process whose exit closes done.
func (n *node) probe(p *pod, done chan struct{}) {
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
		case <-done:
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

// stop sends SIGTERM and waits for the grace period before SIGKILL.
func (n *node) stop(p *pod, grace time.Duration) {
	p.stopped.Store(true)
	n.setReady(p, false)
	proc, done := p.proc, p.done
	if proc == nil || p.exited() {
		return
	}
	n.h.logf("node: stopping pod %s (SIGTERM, grace %s)", p.name, grace)
	_ = proc.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		n.h.logf("node: pod %s outlived its grace period; SIGKILL", p.name)
		_ = proc.Kill()
		<-done
	}
}

// stopAll stops every pod when the harness stops (the node shuts down), each with the grace
// period of its spec as far as known (30 s at most).
func (n *node) stopAll() {
	n.mu.Lock()
	pods := make([]*pod, 0, len(n.pods))
	for _, p := range n.pods {
		pods = append(pods, p)
	}
	n.pods = map[types.UID]*pod{}
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Add(1)
		go func() { defer wg.Done(); n.stop(p, 30*time.Second); n.h.network.releasePod(p.name) }()
	}
	wg.Wait()
	n.stopping.Wait()
}

// readyPod returns a ready pod whose labels match selector, if any (the oldest first, as a
// stable choice).
func (n *node) readyPod(ns string, selector map[string]string) *pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	var best *pod
	for _, p := range n.pods {
		if p.namespace != ns || !p.ready.Load() || p.stopped.Load() || !matches(selector, p.labels) {
			continue
		}
		if best == nil || p.created.Before(best.created) {
			best = p
		}
	}
	return best
}

// podsMatching returns the pods of namespace whose labels match selector.
func (n *node) podsMatching(ns string, selector map[string]string) []*pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*pod
	for _, p := range n.pods {
		if p.namespace == ns && matches(selector, p.labels) && p.proc != nil {
			out = append(out, p)
		}
	}
	return out
}

// podFor returns the newest live pod of a Deployment (ready or not) with a running container.
func (n *node) podFor(ns, deployment string) *pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	var best *pod
	for _, p := range n.pods {
		if p.deployment != (types.NamespacedName{Namespace: ns, Name: deployment}) || p.stopped.Load() || p.proc == nil || p.exited() {
			continue
		}
		if best == nil || p.created.After(best.created) {
			best = p
		}
	}
	return best
}

// PodExit is how a pod's container ended.
type PodExit struct {
	Pod     string
	Status  string // "exit status 0", "signal: killed", ...
	LogPath string
}

// exited tells whether the current container process has ended.
func (p *pod) exited() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return true
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

func joinHostPort(ip string, port int32) string {
	return ip + ":" + strconv.Itoa(int(port))
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
