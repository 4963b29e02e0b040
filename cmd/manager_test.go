package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/poll"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

var (
	env        *testenv.Env
	skipReason string
)

func TestMain(m *testing.M) { testenv.Main(m, &env, &skipReason) }

func TestManagerFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr error // nil, flag.ErrHelp, or a usageError
		check   func(t *testing.T, o *managerOptions)
	}{
		{name: "defaults", args: nil, check: func(t *testing.T, o *managerOptions) {
			if !o.leaderElect || o.metricsAddr != ":8443" || !o.metricsSecure || o.probeAddr != ":8081" {
				t.Errorf("unexpected defaults: %+v", o)
			}
		}},
		{name: "daemon image", args: []string{"--daemon-image", "registry.example/ftp:1"}, check: func(t *testing.T, o *managerOptions) {
			if o.daemonImage != "registry.example/ftp:1" {
				t.Errorf("daemonImage = %q", o.daemonImage)
			}
		}},
		{name: "client and worker limits", args: []string{"--kube-api-qps", "50", "--kube-api-burst", "80", "--max-concurrent-reconciles", "3"}, check: func(t *testing.T, o *managerOptions) {
			if o.kubeAPIQPS != 50 || o.kubeAPIBurst != 80 || o.maxReconciles != 3 {
				t.Errorf("qps, burst, workers = %v, %d, %d", o.kubeAPIQPS, o.kubeAPIBurst, o.maxReconciles)
			}
		}},
		{name: "zero workers", args: []string{"--max-concurrent-reconciles", "0"}, wantErr: usageError{}},
		{name: "negative qps", args: []string{"--kube-api-qps", "-1"}, wantErr: usageError{}},
		{name: "help", args: []string{"--help"}, wantErr: flag.ErrHelp},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: usageError{}},
		{name: "stray argument", args: []string{"extra"}, wantErr: usageError{}},
		{name: "empty image", args: []string{"--daemon-image="}, wantErr: usageError{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseManagerFlags(tc.args)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case errors.Is(tc.wantErr, flag.ErrHelp) && !errors.Is(err, flag.ErrHelp):
				t.Fatalf("want flag.ErrHelp, got %v", err)
			case tc.wantErr != nil && !errors.Is(tc.wantErr, flag.ErrHelp) && !errors.As(err, new(usageError)):
				t.Fatalf("want a usage error, got %v", err)
			}
			if tc.check != nil && err == nil {
				tc.check(t, o)
			}
		})
	}
}

func TestDispatchExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"--help"}, 0},
		{[]string{"bogus"}, 2},
		{[]string{"manager", "--help"}, 0},
		{[]string{"manager", "--no-such-flag"}, 2},
		{[]string{"ftpd", "--help"}, 0},
	}
	for _, tc := range cases {
		if got := dispatch(tc.args, devNull(t)); got != tc.want {
			t.Errorf("dispatch(%q) = %d, want %d", tc.args, got, tc.want)
		}
	}
}

func devNull(t *testing.T) *os.File {
	t.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestManagerCommandReconcilesAndElectsALeader runs the real `manager` subcommand against the
// test API server through a kubeconfig, as an operator outside the cluster would.
func TestManagerCommandReconcilesAndElectsALeader(t *testing.T) {
	if env == nil {
		t.Skip(skipReason)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := parseManagerFlags([]string{
		"--kubeconfig", kubeconfig,
		"--leader-elect", "--leader-election-namespace", "default",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := startManager(ctx, opts)

	server := &ftpv1alpha1.FTPServer{
		ObjectMeta: metav1.ObjectMeta{Name: "via-manager", Namespace: "default"},
		Spec: ftpv1alpha1.FTPServerSpec{
			Volumes: []ftpv1alpha1.FTPVolume{{Name: "data", ClaimTemplate: &ftpv1alpha1.ClaimTemplate{Size: resource.MustParse("1Gi")}}},
		},
	}
	if err := env.Client.Create(ctx, server); err != nil {
		t.Fatalf("create FTPServer: %v", err)
	}
	err = poll.Until(ctx, 30*time.Second, 100*time.Millisecond, "the manager's status on the FTPServer", func(ctx context.Context) (bool, error) {
		if err := run.alive(); err != nil {
			return false, err
		}
		var got ftpv1alpha1.FTPServer
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(server), &got); err != nil {
			return false, err
		}
		return got.Status.ObservedGeneration == got.Generation && meta.FindStatusCondition(got.Status.Conditions, ftpv1alpha1.ConditionReady) != nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var lease coordinationv1.Lease
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "ftp-operator.kubeftp.dev"}, &lease); err != nil {
		t.Fatalf("leader-election lease: %v", err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Fatalf("lease has no holder: %+v", lease.Spec)
	}

	run.stop(t)
}
