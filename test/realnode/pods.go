package realnode

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

// Network names this kind of cluster where the harness names its network mode, for tests that
// run against both.
func (c *Cluster) Network() string { return "realnode" }

// runningPod is the running, not terminating pod of Deployment namespace/name (the operator
// names an FTPServer's Deployment after it), or nil.
func (c *Cluster) runningPod(ctx context.Context, namespace, name string) *corev1.Pod {
	var d appsv1.Deployment
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &d); err != nil || d.Spec.Selector == nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil
	}
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			return p
		}
	}
	return nil
}

// PodIP is the address of the running pod of Deployment namespace/name, or "".
func (c *Cluster) PodIP(namespace, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p := c.runningPod(ctx, namespace, name); p != nil {
		return p.Status.PodIP
	}
	return ""
}

// PodLog is the log of the running pod of Deployment namespace/name (its first container),
// fetched through the API server from the kubelet as kubectl logs does.
func (c *Cluster) PodLog(namespace, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := c.runningPod(ctx, namespace, name)
	if p == nil {
		return ""
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return ""
	}
	data, err := cs.CoreV1().Pods(namespace).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return fmt.Sprintf("(logs of %s: %v)", p.Name, err)
	}
	return string(data)
}

// PodPID is the host PID of the first container's main process in the running pod of
// Deployment namespace/name, or 0: a restarted container has a new one.
func (c *Cluster) PodPID(namespace, name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.containerPID(ctx, c.runningPod(ctx, namespace, name))
}

// ContainerPID is the host PID of the first container's main process of pod namespace/name
// (a StatefulSet's replica, say), or 0.
func (c *Cluster) ContainerPID(namespace, name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p corev1.Pod
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &p); err != nil {
		return 0
	}
	return c.containerPID(ctx, &p)
}

func (c *Cluster) containerPID(ctx context.Context, p *corev1.Pod) int {
	if p == nil || len(p.Status.ContainerStatuses) == 0 {
		return 0
	}
	id, ok := strings.CutPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
	nd := c.nodeOf(p.Spec.NodeName)
	if !ok || nd == nil {
		return 0
	}
	// TASK PID STATUS, one line per running container.
	out, err := c.ctr(ctx, nd, "tasks", "ls")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == id {
			pid, _ := strconv.Atoi(f[1])
			return pid
		}
	}
	return 0
}

// WaitReady waits until the FTPServer's Ready condition is True for its current generation.
func (c *Cluster) WaitReady(ctx context.Context, namespace, name string, timeout time.Duration) (*ftpv1alpha1.FTPServer, error) {
	return testenv.WaitFTPServer(ctx, c.Client, namespace, name, timeout, "Ready", testenv.IsReady)
}

// WaitReason waits until the FTPServer's Ready condition has reason for its current generation.
func (c *Cluster) WaitReason(ctx context.Context, namespace, name, reason string, timeout time.Duration) (*ftpv1alpha1.FTPServer, error) {
	return testenv.WaitFTPServer(ctx, c.Client, namespace, name, timeout, "Ready reason "+reason, testenv.HasReason(reason))
}
