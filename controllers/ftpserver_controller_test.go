package controllers

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

var (
	env        *testenv.Env
	skipReason string
)

func TestMain(m *testing.M) { testenv.Main(m, &env, &skipReason) }

// startManager runs the reconciler in a manager against the test API server until the test ends.
func startManager(t *testing.T) {
	t.Helper()
	if env == nil {
		t.Skip(skipReason)
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Each test starts its own manager with the same controller name.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatalf("create manager: %v", err)
	}
	r := &FTPServerReconciler{Client: mgr.GetClient(), DaemonImage: "example.invalid/ftp-operator:test"}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatalf("register reconciler: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager stopped with error: %v", err)
		}
	})
}

func newFTPServer(name string) *ftpv1alpha1.FTPServer {
	return &ftpv1alpha1.FTPServer{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: ftpv1alpha1.FTPServerSpec{
			Volumes: []ftpv1alpha1.FTPVolume{{Name: "data", ClaimTemplate: &ftpv1alpha1.ClaimTemplate{Size: resource.MustParse("1Gi")}}},
			Users:   []ftpv1alpha1.FTPUser{{Name: "alice", PasswordSecretRef: ftpv1alpha1.SecretKeyRef{Name: "alice"}}},
		},
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReconcilerReportsStatusAndIsQuietInSteadyState(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	server := newFTPServer("status-report")
	if err := env.Client.Create(ctx, server); err != nil {
		t.Fatalf("create FTPServer: %v", err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(ctx, server) })

	var got ftpv1alpha1.FTPServer
	eventually(t, 20*time.Second, "status with observedGeneration and a Ready condition", func() (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(server), &got); err != nil {
			return false, err
		}
		return got.Status.ObservedGeneration == got.Generation &&
			meta.FindStatusCondition(got.Status.Conditions, ftpv1alpha1.ConditionReady) != nil, nil
	})
	ready := meta.FindStatusCondition(got.Status.Conditions, ftpv1alpha1.ConditionReady)
	if ready.Status != metav1.ConditionFalse || ready.Reason != ftpv1alpha1.ReasonProgressing {
		t.Fatalf("Ready = %s/%s, want False/%s while no workloads are built", ready.Status, ready.Reason, ftpv1alpha1.ReasonProgressing)
	}

	// Touching the object triggers reconciles; with nothing new to report, the status (and so the
	// resourceVersion after our own touch) must stay as it is.
	for i := 0; i < 3; i++ {
		patch := client.MergeFrom(got.DeepCopy())
		if got.Annotations == nil {
			got.Annotations = map[string]string{}
		}
		got.Annotations["test.kubeftp.dev/touch"] = time.Now().Format(time.RFC3339Nano)
		if err := env.Client.Patch(ctx, &got, patch); err != nil {
			t.Fatalf("touch: %v", err)
		}
	}
	touchedVersion := got.ResourceVersion
	time.Sleep(2 * time.Second) // give the reconciler time to (wrongly) write
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(server), &got); err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != touchedVersion {
		t.Fatalf("reconciler wrote although nothing changed: resourceVersion %s -> %s", touchedVersion, got.ResourceVersion)
	}
}
