package controllers

import (
	"context"
	"encoding/json"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
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
	case *networkingv1.NetworkPolicy:
		return &networkingv1.NetworkPolicy{}
	}
	t.Fatalf("no empty object for %T", obj)
	return nil
}
