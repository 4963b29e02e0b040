package operatormetrics

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/poll"
)

func server(ns, name string, conds ...metav1.Condition) *ftpv1alpha1.FTPServer {
	s := &ftpv1alpha1.FTPServer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	s.Status.Conditions = conds
	return s
}

func ready(status metav1.ConditionStatus) metav1.Condition {
	return metav1.Condition{Type: ftpv1alpha1.ConditionReady, Status: status, Reason: "Test", LastTransitionTime: metav1.Now()}
}

func TestReadinessCollect(t *testing.T) {
	cases := []struct {
		name    string
		servers []client.Object
		want    string
	}{
		{name: "no servers", want: ""},
		{
			name: "ready, not ready, unknown and not yet reported",
			servers: []client.Object{
				server("a", "up", ready(metav1.ConditionTrue)),
				server("a", "down", ready(metav1.ConditionFalse)),
				server("b", "unknown", ready(metav1.ConditionUnknown)),
				server("b", "new"),
				server("c", "other-condition-only", metav1.Condition{Type: "Stalled", Status: metav1.ConditionTrue, Reason: "X", LastTransitionTime: metav1.Now()}),
			},
			want: `
ftp_operator_ftpserver_ready{ftpserver="down",namespace="a"} 0
ftp_operator_ftpserver_ready{ftpserver="up",namespace="a"} 1
ftp_operator_ftpserver_ready{ftpserver="new",namespace="b"} 0
ftp_operator_ftpserver_ready{ftpserver="unknown",namespace="b"} 0
ftp_operator_ftpserver_ready{ftpserver="other-condition-only",namespace="c"} 0
`,
		},
	}
	scheme := runtime.NewScheme()
	if err := ftpv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.servers...).Build()
			r := NewReadiness(c, prometheus.NewRegistry())
			want := ""
			if tc.want != "" {
				want = "# HELP " + ReadyMetric + " Whether the FTPServer's Ready condition is True (1) or not (0), from the operator's cache.\n# TYPE " + ReadyMetric + " gauge" + tc.want
			}
			if err := testutil.CollectAndCompare(r, strings.NewReader(want), ReadyMetric); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestReadinessRegistersWhileRunning: the collector is on the registry only while it runs, so a
// second manager in the same process (tests, a regained leadership) can register again.
func TestReadinessRegistersWhileRunning(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := ftpv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(server("a", "up", ready(metav1.ConditionTrue))).Build()
	for round := 0; round < 2; round++ {
		r := NewReadiness(c, reg)
		if !r.NeedLeaderElection() {
			t.Fatal("the collector must run on the leader only")
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Start(ctx) }()
		poll.Eventually(t, 5*time.Second, fmt.Sprintf("round %d: the collector registered", round), func() (bool, error) {
			n, err := testutil.GatherAndCount(reg, ReadyMetric)
			if err != nil {
				return false, poll.Stop(err)
			}
			return n == 1, nil
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if n, _ := testutil.GatherAndCount(reg, ReadyMetric); n != 0 {
			t.Fatalf("round %d: still registered after stop", round)
		}
	}
}
