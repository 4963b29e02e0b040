package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// What the controller's Go code assumes about the CRD, checked against the real API server
// (the CRD of config/crd/bases), so that neither side can change alone.

// dryRunCreate has the API server default and validate s without storing it.
func dryRunCreate(t *testing.T, s *ftpv1alpha1.FTPServer) (*ftpv1alpha1.FTPServer, error) {
	t.Helper()
	c := s.DeepCopy()
	c.Namespace, c.UID, c.ResourceVersion = newNamespace(t), "", ""
	err := env.Client.Create(context.Background(), c, client.DryRunAll)
	return c, err
}

// TestFixturesAreDefaultedAsTheAPIServerDoes: the builder fixtures (and so the golden files) are
// defaulted by withDefaults, by hand. That function must do what the CRD's defaults do: for a
// spec that sets nothing it can default, the API server's result is withDefaults's; and every
// fixture is one the API server accepts and leaves as it is.
func TestFixturesAreDefaultedAsTheAPIServerDoes(t *testing.T) {
	if env == nil {
		t.Skip(skipReason)
	}
	t.Run("nothing set", func(t *testing.T) {
		bare := undefaultedMinimalServer()
		got, err := dryRunCreate(t, bare)
		if err != nil {
			t.Fatal(err)
		}
		if want := withDefaults(bare.DeepCopy()); !equality.Semantic.DeepEqual(got.Spec, want.Spec) {
			t.Fatalf("withDefaults differs from the CRD's defaults; make it do what the API server does (then `go test ./controllers -run Golden -update`):\n%s", specDiff(t, want.Spec, got.Spec))
		}
	})
	for _, fixture := range []*ftpv1alpha1.FTPServer{minimalServer(), fullServer(), clusterIPServer()} {
		t.Run(fixture.Name, func(t *testing.T) {
			got, err := dryRunCreate(t, fixture)
			if err != nil {
				t.Fatalf("the API server refuses the fixture: %v", err)
			}
			if !equality.Semantic.DeepEqual(got.Spec, fixture.Spec) {
				t.Fatalf("the API server defaults fields the fixture leaves unset:\n%s", specDiff(t, fixture.Spec, got.Spec))
			}
		})
	}
}

// specDiff shows both specs, for a reader to compare.
func specDiff(t *testing.T, fixture, server ftpv1alpha1.FTPServerSpec) string {
	t.Helper()
	out, err := yaml.Marshal(map[string]ftpv1alpha1.FTPServerSpec{"fixture (withDefaults)": fixture, "API server": server})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestPassiveRangeRuleSparesThePodPorts ties the CEL rule on ports.passive (api/v1alpha1) to the
// pod's ports the builders use, controlContainerPort and opsContainerPort: a passive range over
// either is refused, and one right beside it is accepted, so the rule excludes exactly these
// numbers.
func TestPassiveRangeRuleSparesThePodPorts(t *testing.T) {
	if env == nil {
		t.Skip(skipReason)
	}
	for _, port := range []int32{controlContainerPort, opsContainerPort} {
		for _, tc := range []struct {
			start, end int32
			refused    bool
		}{
			{port, port, true},
			{port - 1, port + 1, true},
			{port - 1, port - 1, false},
			{port + 1, port + 1, false},
		} {
			t.Run(fmt.Sprintf("%d-%d", tc.start, tc.end), func(t *testing.T) {
				s := minimalServer()
				s.Spec.Ports.Passive = ftpv1alpha1.PassivePortRange{Start: tc.start, End: tc.end}
				_, err := dryRunCreate(t, s)
				switch {
				case tc.refused && (!apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "ports.passive must not include")):
					t.Fatalf("passive range %d-%d over the pod port %d: want the CEL rule's refusal, got %v", tc.start, tc.end, port, err)
				case !tc.refused && err != nil:
					t.Fatalf("passive range %d-%d beside the pod port %d refused: %v", tc.start, tc.end, port, err)
				}
			})
		}
	}
}
