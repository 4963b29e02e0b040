package controllers

import (
	"context"
	"encoding/json"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// TestAppliedObjectsCompareEqualToTheirBuilders applies every builder's output to the real API
// server and checks that the fields we then own read back exactly as built. Any difference (a
// field the server defaults inside our ownership, say) would make the reconciler write on every
// pass instead of settling.
func TestAppliedObjectsCompareEqualToTheirBuilders(t *testing.T) {
	if env == nil {
		t.Skip(skipReason)
	}
	for _, fixture := range []*ftpv1alpha1.FTPServer{minimalServer(), fullServer(), clusterIPServer()} {
		t.Run(fixture.Name, func(t *testing.T) {
			fixture.Namespace = newNamespace(t)
			a := applier{client: env.Client, server: fixture}
			for _, obj := range desiredObjects(t, fixture) {
				desired := obj.(client.Object)
				if applied, err := a.apply(context.Background(), desired, nil); err != nil || applied == nil || applied.GetResourceVersion() == "" {
					t.Fatalf("first apply of %T %s did not create it: applied=%v err=%v", desired, desired.GetName(), applied != nil, err)
				}
				// envtest runs no namespace controller: free node ports for later runs ourselves.
				t.Cleanup(func() { _ = env.Client.Delete(context.Background(), desired) })
				existing := emptyLike(t, desired)
				get(t, fixture.Namespace, desired.GetName(), existing)
				want, _ := applyDocument(desired)
				got, err := ownedFields(existing)
				if err != nil {
					t.Fatal(err)
				}
				if !equality.Semantic.DeepEqual(want, got) {
					w, _ := json.MarshalIndent(want, "", " ")
					g, _ := json.MarshalIndent(got, "", " ")
					t.Fatalf("%T %s: owned fields differ from the built object\nbuilt: %s\nexisting: %s", desired, desired.GetName(), w, g)
				}
				if applied, err := a.apply(context.Background(), desired, existing); err != nil || applied != nil {
					t.Fatalf("second apply of unchanged %T %s sent a request (err=%v)", desired, desired.GetName(), err)
				}
			}
		})
	}
}

func emptyLike(t *testing.T, obj client.Object) client.Object {
	t.Helper()
	switch obj.(type) {
	case *corev1.ConfigMap:
		return &corev1.ConfigMap{}
	case *corev1.Secret:
		return &corev1.Secret{}
	case *corev1.Service:
		return &corev1.Service{}
	case *corev1.PersistentVolumeClaim:
		return &corev1.PersistentVolumeClaim{}
	case *appsv1.Deployment:
		return &appsv1.Deployment{}
	case *appsv1.StatefulSet:
		return &appsv1.StatefulSet{}
	case *policyv1.PodDisruptionBudget:
		return &policyv1.PodDisruptionBudget{}
	case *networkingv1.NetworkPolicy:
		return &networkingv1.NetworkPolicy{}
	}
	t.Fatalf("no empty object for %T", obj)
	return nil
}

// TestComparisonMemoStillSeesChanges: the memo that spares the comparison of an unchanged object
// never hides a change: someone else's write to a field we own (a new resourceVersion), a new
// desired object (a new digest), or the object re-created under the same name (a new UID).
func TestComparisonMemoStillSeesChanges(t *testing.T) {
	if env == nil {
		t.Skip(skipReason)
	}
	ctx := context.Background()
	server := minimalServer()
	server.Namespace = newNamespace(t)
	a := applier{client: env.Client, server: server, equal: map[string]equalSeen{}}
	desired, err := configMapFor(server, ftpdConfigFor(server, clusterFacts{}, advertisedAddress{static: "203.0.113.7"}))
	if err != nil {
		t.Fatal(err)
	}
	current := func() *corev1.ConfigMap { return get(t, server.Namespace, desired.Name, &corev1.ConfigMap{}) }
	mustApply := func(what string, desired, existing client.Object, wantSent bool) {
		t.Helper()
		applied, err := a.apply(ctx, desired, existing)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if sent := applied != nil; sent != wantSent {
			t.Fatalf("%s: apply sent=%v, want %v", what, sent, wantSent)
		}
	}
	mustApply("create", desired, nil, true)
	mustApply("unchanged, compared", desired, current(), false)
	if len(a.equal) != 1 {
		t.Fatalf("memo after an equal comparison: %v, want the ConfigMap", a.equal)
	}
	mustApply("unchanged, remembered", desired, current(), false)

	// Someone else takes over a field we own.
	cm := current()
	cm.Data[fileconfig.ConfigFileName] = "tampered: true\n"
	if err := env.Client.Update(ctx, cm, client.FieldOwner("someone-else")); err != nil {
		t.Fatal(err)
	}
	mustApply("changed by someone else", desired, current(), true)
	mustApply("restored", desired, current(), false)

	// A new desired object.
	changed := desired.DeepCopy()
	changed.Data[fileconfig.ConfigFileName] += "# changed\n"
	mustApply("new desired", changed, current(), true)
	mustApply("new desired, applied", changed, current(), false)

	// Deleted and re-created with the same content by us: a new UID is compared afresh (and
	// found equal).
	if err := env.Client.Delete(ctx, current()); err != nil {
		t.Fatal(err)
	}
	mustApply("re-create", changed, nil, true)
	before := a.equal["ConfigMap/"+desired.Name]
	mustApply("re-created, compared", changed, current(), false)
	if after := a.equal["ConfigMap/"+desired.Name]; after.uid == before.uid {
		t.Fatalf("the memo kept the old object's UID %s", before.uid)
	}
}
