package gitops

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/controllers"
	"github.com/kubeftp/ftp-operator/internal/poll"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

// TestGitOpsToolsReadTheControllersStatus runs the real reconciler against the API server and
// takes an FTPServer through the states a GitOps tool meets — blocked on a missing Secret,
// waiting for the load balancer, rolling out, ready, and changed again — checking at each what
// kstatus (Flux) and the Argo CD health check conclude.
func TestGitOpsToolsReadTheControllersStatus(t *testing.T) {
	if env == nil {
		t.Skip(skipReason)
	}
	lua(t) // fail or skip early, before starting anything
	startManager(t)
	ctx := t.Context()
	c := env.Client

	ns := fmt.Sprintf("gitops-%d", time.Now().UnixNano()%1000000)
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	server := &ftpv1alpha1.FTPServer{
		ObjectMeta: metav1.ObjectMeta{Name: "files", Namespace: ns},
		Spec: ftpv1alpha1.FTPServerSpec{
			Volumes: []ftpv1alpha1.FTPVolume{{Name: "data", ClaimTemplate: &ftpv1alpha1.ClaimTemplate{Size: resource.MustParse("1Gi")}}},
			Users:   []ftpv1alpha1.FTPUser{{Name: "partner", PasswordSecretRef: ftpv1alpha1.SecretKeyRef{Name: "partner-ftp"}}},
		},
	}
	if err := c.Create(ctx, server); err != nil {
		t.Fatal(err)
	}

	expect := func(step string, reason string, ks status.Status, argo string) {
		t.Helper()
		var obj map[string]any
		poll.Eventually(t, 20*time.Second, step+": Ready reason "+reason, func() (bool, error) {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(ftpv1alpha1.GroupVersion.WithKind("FTPServer"))
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "files"}, u); err != nil {
				return false, poll.Stop(err)
			}
			obj = u.Object
			generation, _, _ := unstructured.NestedInt64(obj, "status", "observedGeneration")
			return generation == u.GetGeneration() && readyReason(obj) == reason, fmt.Errorf("status: %v", obj["status"])
		})
		if got := kstatusOf(t, obj); got.Status != ks {
			t.Errorf("%s: kstatus %s (%s), want %s", step, got.Status, got.Message, ks)
		}
		if got := argoHealth(t, obj); got.Status != argo {
			t.Errorf("%s: Argo CD health %s (%s), want %s", step, got.Status, got.Message, argo)
		}
	}

	expect("password Secret missing", ftpv1alpha1.ReasonSecretNotFound, status.FailedStatus, "Degraded")

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "partner-ftp", Namespace: ns}, StringData: map[string]string{"password": "s3cret"}}
	if err := c.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	expect("no load balancer address yet", ftpv1alpha1.ReasonWaitingForAddress, status.InProgressStatus, "Progressing")

	// Play the cloud's load balancer controller, then the Deployment controller and kubelet.
	update(t, &corev1.Service{}, ns, "files", func(o client.Object) {
		o.(*corev1.Service).Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}
	}, true)
	expect("daemon rolling out", ftpv1alpha1.ReasonWaitingForPods, status.InProgressStatus, "Progressing")

	markAvailable(t, ns)
	expect("serving", ftpv1alpha1.ReasonReady, status.CurrentStatus, "Healthy")

	// A spec change that rolls the pods: not healthy again until the new pods are available.
	update(t, &ftpv1alpha1.FTPServer{}, ns, "files", func(o client.Object) {
		o.(*ftpv1alpha1.FTPServer).Spec.Limits.IdleTimeout = &metav1.Duration{Duration: 7 * time.Minute} // read at start: rolls the pods
	}, false)
	expect("spec changed, pods rolling", ftpv1alpha1.ReasonWaitingForPods, status.InProgressStatus, "Progressing")
	markAvailable(t, ns)
	expect("serving the new spec", ftpv1alpha1.ReasonReady, status.CurrentStatus, "Healthy")
}

func readyReason(obj map[string]any) string {
	conds, _, _ := unstructured.NestedSlice(obj, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			r, _ := m["reason"].(string)
			return r
		}
	}
	return ""
}

func update(t *testing.T, obj client.Object, ns, name string, change func(client.Object), statusOnly bool) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
			return err
		}
		change(obj)
		if statusOnly {
			return env.Client.Status().Update(t.Context(), obj)
		}
		return env.Client.Update(t.Context(), obj)
	})
	if err != nil {
		t.Fatalf("update %s/%s: %v", ns, name, err)
	}
}

// markAvailable plays the Deployment controller once the operator has written its Deployment.
func markAvailable(t *testing.T, ns string) {
	t.Helper()
	if err := testenv.MarkDeploymentAvailable(t.Context(), env.Client, ns, "files"); err != nil {
		t.Fatal(err)
	}
}

// startManager runs the operator's manager (controllers.NewManager) until the test ends.
func startManager(t *testing.T) {
	t.Helper()
	ctrl.SetLogger(logr.Discard())
	mgr, err := controllers.NewManager(env.Config, controllers.ManagerOptions{
		Scheme: env.Scheme, DaemonImage: "example.invalid/ftp-operator:test", BcryptCost: bcrypt.MinCost,
		ConfigProber:       &testenv.InstantDaemons{Client: env.Client},
		SkipNameValidation: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := testenv.RunManager(mgr, nil)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}
