package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeftp/ftp-operator/test/harness"
)

// PodExit is how a pod's container ended, as the harness reports it.
type PodExit = harness.PodExit

// runExitRecorder watches pods and remembers, per Deployment, how the first container of its
// most recent pod ended, with a copy of that container's log: once the pod object is deleted,
// neither its status nor its log can be asked for any more, yet tests want to see that a
// daemon drained and exited 0 after its FTPServer went away.
func (c *Cluster) runExitRecorder(ctx context.Context) {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		c.logf("exits: %v", err)
		return
	}
	for ctx.Err() == nil {
		if err := c.watchExits(ctx, cs); err != nil && ctx.Err() == nil {
			c.logf("exits: %v", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (c *Cluster) watchExits(ctx context.Context, cs kubernetes.Interface) error {
	list, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	for i := range list.Items {
		c.recordExit(&list.Items[i])
	}
	w, err := cs.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		return fmt.Errorf("watch pods: %w", err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if pod, ok := ev.Object.(*corev1.Pod); ok {
			c.recordExit(pod)
		}
	}
	return nil // the watch ended (timeout, compaction): list and watch again
}

// deploymentOf is the workload a pod belongs to: its StatefulSet, or the Deployment of its
// ReplicaSet (the ReplicaSet's name without the pod-template-hash suffix the Deployment
// controller adds).
func deploymentOf(pod *corev1.Pod) string {
	hash := pod.Labels["pod-template-hash"]
	for _, ref := range pod.OwnerReferences {
		switch {
		case ref.Kind == "StatefulSet":
			return ref.Name
		case ref.Kind == "ReplicaSet" && hash != "":
			return strings.TrimSuffix(ref.Name, "-"+hash)
		}
	}
	return ""
}

func (c *Cluster) recordExit(pod *corev1.Pod) {
	deployment := deploymentOf(pod)
	if deployment == "" || len(pod.Status.ContainerStatuses) == 0 || len(pod.Spec.Containers) == 0 {
		return
	}
	var status *corev1.ContainerStatus
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == pod.Spec.Containers[0].Name {
			status = &pod.Status.ContainerStatuses[i]
		}
	}
	nd := c.nodeOf(pod.Spec.NodeName)
	if status == nil || nd == nil {
		return
	}
	logOf := func(restart int32) (src, dst string) {
		return filepath.Join(nd.podLogsDir(), fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID), status.Name, fmt.Sprintf("%d.log", restart)),
			filepath.Join(c.dir, "exits", fmt.Sprintf("%s_%s_%s_%d.log", pod.Namespace, pod.Name, status.Name, restart))
	}
	if status.State.Running != nil {
		// A hard link to the running container's log keeps all of it, however late the event
		// of its end comes: the kubelet may remove the pod's directory first (under load, the
		// copy below then found nothing).
		src, dst := logOf(status.RestartCount)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
			_ = os.Link(src, dst)
		}
	}
	term, restart := status.State.Terminated, status.RestartCount
	if term == nil && status.LastTerminationState.Terminated != nil {
		// Running again after a crash: the previous run ended.
		term, restart = status.LastTerminationState.Terminated, status.RestartCount-1
	}
	if term == nil {
		return
	}
	key := types.NamespacedName{Namespace: pod.Namespace, Name: deployment}
	seen := fmt.Sprintf("%s/%s/%d", pod.UID, term.ContainerID, restart)
	c.mu.Lock()
	done := c.exitSeen[key] == seen
	c.exitSeen[key] = seen
	c.mu.Unlock()
	if done {
		return
	}
	// The kubelet's log of that run, copied before the kubelet removes the pod's directory
	// (or, when it was faster, the hard link made while the container ran).
	src, dst := logOf(restart)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
		if data, err := os.ReadFile(src); err == nil {
			if _, lerr := os.Stat(dst); lerr != nil || !sameFile(src, dst) {
				_ = os.WriteFile(dst, data, 0o644)
			}
		} else if _, lerr := os.Stat(dst); lerr != nil {
			c.logf("exits: log of %s/%s: %v", pod.Namespace, pod.Name, err)
		}
	}
	exit := PodExit{Pod: pod.Name, Status: exitStatus(term), LogPath: dst}
	c.mu.Lock()
	c.exits[key] = exit
	c.mu.Unlock()
	c.logf("exits: %s/%s ended: %s (%s)", pod.Namespace, pod.Name, exit.Status, term.Reason)
}

// exitStatus words a container's end as os/exec does a process's: "exit status 0", "signal:
// killed". The runtime reports a death by signal N as exit code 128+N.
func exitStatus(t *corev1.ContainerStateTerminated) string {
	if t.Signal != 0 {
		return "signal: " + syscall.Signal(t.Signal).String()
	}
	if t.ExitCode > 128 && t.ExitCode < 128+65 {
		return "signal: " + syscall.Signal(t.ExitCode-128).String()
	}
	return fmt.Sprintf("exit status %d", t.ExitCode)
}

// LastExit tells how the most recent pod of Deployment (or StatefulSet) namespace/name ended (its first
// container), with LogPath a copy of that container's log.
func (c *Cluster) LastExit(namespace, name string) (PodExit, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.exits[types.NamespacedName{Namespace: namespace, Name: name}]
	return e, ok
}

// sameFile tells whether a and b are one file (b a hard link of a).
func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}
