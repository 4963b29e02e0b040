package realnode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The release that InstallOperatorChart makes: the names the install guide uses.
const (
	OperatorRelease   = "ftp-operator"
	OperatorNamespace = "ftp-operator-system"
	// OperatorDeployment is the chart's manager Deployment (<release>-manager, the release name
	// being the chart's name, so fullname is the release name alone).
	OperatorDeployment = OperatorRelease + "-manager"
)

// InstallOperatorChart installs the operator as a user would, `helm install` of the chart at
// chartDir into OperatorNamespace, with image (imported with Options.Images, never pulled) for
// the manager and its daemons, and waits for the manager to be available. The operator then
// runs as a pod with the chart's ServiceAccount and RBAC, under the restricted Pod Security
// level the chart declares, and reaches the daemons' ops ports on their pod IPs. helm is the
// pinned build (`make test` passes it as $HELM); its state stays in the run directory.
func (c *Cluster) InstallOperatorChart(ctx context.Context, helm, chartDir, image string, timeout time.Duration) (string, error) {
	repo, tag, ok := strings.Cut(image, ":")
	if !ok || strings.Contains(tag, "/") {
		return "", fmt.Errorf("install chart: image %q has no tag", image)
	}
	home := filepath.Join(c.dir, "helm")
	cmd := exec.CommandContext(ctx, helm, "install", OperatorRelease, chartDir,
		"--kubeconfig", c.KubeConfigPath(),
		"--namespace", OperatorNamespace, "--create-namespace",
		"--set", "image.repository="+repo, "--set", "image.tag="+tag,
		// The image is in the node's containerd only: a pull would fail.
		"--set", "image.pullPolicy=Never",
		"--wait", "--timeout", timeout.String())
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm install %s: %w: %s\npods: %s", chartDir, err, strings.TrimSpace(string(out)),
			c.podSummary(ctx, OperatorNamespace))
	}
	var d appsv1.Deployment
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: OperatorNamespace, Name: OperatorDeployment}, &d); err != nil {
		return string(out), fmt.Errorf("install chart: the manager Deployment: %w", err)
	}
	if d.Status.AvailableReplicas < 1 {
		return string(out), fmt.Errorf("install chart: helm --wait returned with the manager unavailable: %+v", d.Status)
	}
	return string(out), nil
}

// OperatorPod is the running manager pod of the chart's release, or nil.
func (c *Cluster) OperatorPod(ctx context.Context) *corev1.Pod {
	return c.runningPod(ctx, OperatorNamespace, OperatorDeployment)
}

// podSummary lists the pods of namespace with their phase and waiting reasons, for errors.
func (c *Cluster) podSummary(ctx context.Context, namespace string) string {
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.InNamespace(namespace)); err != nil {
		return err.Error()
	}
	var parts []string
	for _, p := range pods.Items {
		s := p.Name + " " + string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				s += " " + w.Reason + ": " + w.Message
			}
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}
