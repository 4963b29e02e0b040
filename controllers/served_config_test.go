package controllers

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
	"github.com/kubeftp/ftp-operator/internal/poll"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

// neverReadyFor watches an FTPServer for d and fails if Ready is ever True meanwhile.
func neverReadyFor(t *testing.T, ns, name string, d time.Duration) {
	t.Helper()
	poll.Consistently(t, d, "Ready not True", func() error {
		s := get(t, ns, name, &ftpv1alpha1.FTPServer{})
		if c := meta.FindStatusCondition(s.Status.Conditions, ftpv1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue {
			return fmt.Errorf("Ready turned True while the pod serves an older config: %+v", c)
		}
		return nil
	})
}

// TestReadyWaitsForPodsToServeTheAddress: an available Deployment is not enough. A new server's
// pods start with the config that carries the load balancer's address (the config and the
// Deployment wait for it) and are Ready without being written to. After the address changes,
// the server is not Ready until the pod serves the new config; the pod is annotated so its
// kubelet refreshes the volume.
func TestReadyWaitsForPodsToServeTheAddress(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	createSecret(t, ns, "alice-ftp", map[string]string{"password": "wonderland"})
	if err := env.Client.Create(ctx, newFTPServer(ns, "files")); err != nil {
		t.Fatal(err)
	}
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonWaitingForAddress)
	if ok, err := exists(ns, "files", &appsv1.Deployment{}); ok || err != nil {
		t.Fatalf("the Deployment exists before the address is known (%v): its pods would start with a config without it", err)
	}
	setLoadBalancerIP(t, ns, "files", "203.0.113.6")
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonWaitingForPods)
	// The moment a real cluster passes through: the Deployment counts as rolled out while its
	// pod is not Ready yet, so it has not said what it serves. Past several rechecks it is not
	// written to (it may well start with the current inputs, as here).
	if _, err := testenv.StartDeploymentPod(ctx, env.Client, ns, "files"); err != nil {
		t.Fatal(err)
	}
	if c := waitForReason(t, ns, "files", ftpv1alpha1.ReasonWaitingForConfig); !strings.Contains(c.Message, "0 of 1 ready pods") {
		t.Fatalf("Ready = %+v while the pod is not Ready, want WaitingForConfig with 0 of 1 ready pods", c)
	}
	neverReadyFor(t, ns, "files", 3*servedConfigRecheck)
	notAnnotated := func(when string) *corev1.Pod {
		t.Helper()
		pod := get(t, ns, "files-standin", &corev1.Pod{})
		if v, ok := pod.Annotations[inputsVersionAnnotation]; ok {
			t.Fatalf("%s, the pod was annotated with %s=%q: a write for nothing", when, inputsVersionAnnotation, v)
		}
		return pod
	}
	notAnnotated("before it was Ready")
	markDeploymentAvailable(t, ns, "files")
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady)
	pod := notAnnotated("started with the current inputs")

	// From here on its kubelet does not refresh the pod until released.
	if err := daemons.Hold(ctx, pod); err != nil {
		t.Fatal(err)
	}
	for i, address := range []string{"203.0.113.7", "203.0.113.8"} {
		setLoadBalancerIP(t, ns, "files", address)
		c := waitForReason(t, ns, "files", ftpv1alpha1.ReasonWaitingForConfig)
		if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "0 of 1 ready pods") || !strings.Contains(c.Message, address) {
			t.Fatalf("step %d: Ready = %+v, want False with who serves what and the new address", i, c)
		}
		s := get(t, ns, "files", &ftpv1alpha1.FTPServer{})
		if rc := meta.FindStatusCondition(s.Status.Conditions, ftpv1alpha1.ConditionReconciling); rc == nil || rc.Status != metav1.ConditionTrue {
			t.Fatalf("step %d: Reconciling = %+v while pods catch up, want True", i, rc)
		}
		// Past several rechecks, still not Ready.
		neverReadyFor(t, ns, "files", 3*servedConfigRecheck)
		annotated := get(t, ns, "files-standin", &corev1.Pod{}).Annotations[inputsVersionAnnotation]
		if annotated == "" || annotated == pod.Annotations[inputsVersionAnnotation] {
			t.Fatalf("step %d: pod annotation %s = %q, want a new version so the kubelet refreshes the volume", i, inputsVersionAnnotation, annotated)
		}
		pod = get(t, ns, "files-standin", &corev1.Pod{})

		// The kubelet refreshes the volume, the daemon reloads: Ready, with the new address.
		daemons.Release(pod)
		if c := waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady); c.Status != metav1.ConditionTrue {
			t.Fatalf("step %d: Ready = %+v", i, c)
		}
		if got := get(t, ns, "files", &ftpv1alpha1.FTPServer{}).Status.PassiveAddress; got != address {
			t.Fatalf("step %d: status.passiveAddress = %q, want %q", i, got, address)
		}
		if err := daemons.Hold(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadyWaitsForPodsToServeTheUsers: after a password change the server is not Ready until
// every pod serves the new users file, and Ready then names the inputs version the pods carry,
// so that a client (or a pipeline) can tell that the new password works.
func TestReadyWaitsForPodsToServeTheUsers(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	readyServer(t, ns, "files")
	pod := get(t, ns, "files-standin", &corev1.Pod{})
	first := readyInputsVersion(t, readyCondition(t, ns, "files"))
	if err := daemons.Hold(ctx, pod); err != nil {
		t.Fatal(err)
	}
	secret := get(t, ns, "alice-ftp", &corev1.Secret{})
	secret.Data["password"] = []byte("looking-glass")
	if err := env.Client.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	c := waitForReason(t, ns, "files", ftpv1alpha1.ReasonWaitingForConfig)
	if !strings.Contains(c.Message, "still serves an older users file") {
		t.Fatalf("WaitingForConfig message %q does not say the users file is old", c.Message)
	}
	neverReadyFor(t, ns, "files", 3*servedConfigRecheck)

	daemons.Release(pod)
	c = waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady)
	version := get(t, ns, "files-standin", &corev1.Pod{}).Annotations[inputsVersionAnnotation]
	if version == "" || version == first || readyInputsVersion(t, c) != version {
		t.Fatalf("Ready message %q after the change, pod annotation %q (first Ready named %q): want the pod annotated with the new version and Ready naming it", c.Message, version, first)
	}
}

// readyInputsVersion is the inputs version a Ready message names.
func readyInputsVersion(t *testing.T, c *metav1.Condition) string {
	t.Helper()
	_, v, ok := strings.Cut(c.Message, "inputs version ")
	if !ok || v == "" {
		t.Fatalf("Ready message %q names no inputs version", c.Message)
	}
	return v
}

// TestHTTPDaemonConfigProber asks a real HTTP endpoint, reached through the dialer hook, the
// way the manager asks a pod's ops port.
func TestHTTPDaemonConfigProber(t *testing.T) {
	tests := []struct {
		name    string
		podIP   string
		handler http.HandlerFunc
		want    fileconfig.ServedConfig
		wantErr string
	}{
		{"digests", "203.0.113.5", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != fileconfig.ServedConfigPath || r.Host != "203.0.113.5:8080" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write([]byte(`{"configSHA256":"abc","usersSHA256":"def","certificateSHA256":"123"}`))
		}, fileconfig.ServedConfig{ConfigSHA256: "abc", UsersSHA256: "def", CertificateSHA256: "123"}, ""},
		{"a daemon without the endpoint", "203.0.113.5", http.NotFound, fileconfig.ServedConfig{}, "404"},
		{"not JSON", "203.0.113.5", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) }, fileconfig.ServedConfig{}, "invalid character"},
		{"no pod IP yet", "", func(http.ResponseWriter, *http.Request) {}, fileconfig.ServedConfig{}, "no IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			prober := &HTTPDaemonConfigProber{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
			}}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{PodIP: tt.podIP}}
			got, err := prober.ServedConfig(context.Background(), pod)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// TestReadyWaitsForTheServiceToListThePods: pods that serve the current config are not enough
// while the Service's EndpointSlices do not list them as ready (nothing forwards to them yet).
func TestReadyWaitsForTheServiceToListThePods(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	readyServer(t, ns, "files")
	setReady := func(ready bool) {
		t.Helper()
		slice := get(t, ns, "files-standin", &discoveryv1.EndpointSlice{})
		slice.Endpoints[0].Conditions.Ready = &ready
		if err := env.Client.Update(ctx, slice); err != nil {
			t.Fatal(err)
		}
	}
	setReady(false)
	// Nothing the operator watches changed: a spec change makes it look again.
	patchServer(t, ns, "files", func(s *ftpv1alpha1.FTPServer) { s.Spec.Limits.MaxSessions = 99 })
	c := waitForReason(t, ns, "files", ftpv1alpha1.ReasonWaitingForEndpoints)
	if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "0 of 1 ready pods are listed") {
		t.Fatalf("Ready = %+v", c)
	}
	setReady(true)
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady)
}
