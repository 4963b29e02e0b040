package controllers

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// The cache keeps only our apply entry of an owned object's managedFields, and what apply
// compares (ownedFields) reads the same from the trimmed object as from the whole one.
func TestKeepOurApplyEntry(t *testing.T) {
	ours := metav1.ManagedFieldsEntry{Manager: fieldOwner, Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1", FieldsType: "FieldsV1",
		FieldsV1: metav1.NewFieldsV1(`{"f:data":{"f:ftpd.yaml":{}}}`)}
	ourUpdate := metav1.ManagedFieldsEntry{Manager: fieldOwner, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1",
		FieldsV1: metav1.NewFieldsV1(`{"f:data":{"f:other":{}}}`)}
	ourStatus := ours
	ourStatus.Subresource = "status"
	theirs := metav1.ManagedFieldsEntry{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1", FieldsType: "FieldsV1",
		FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:labels":{"f:team":{}}}}`)}
	tests := []struct {
		name string
		in   []metav1.ManagedFieldsEntry
		want []metav1.ManagedFieldsEntry
	}{
		{name: "none", in: nil, want: nil},
		{name: "only ours", in: []metav1.ManagedFieldsEntry{ours}, want: []metav1.ManagedFieldsEntry{ours}},
		{name: "others dropped", in: []metav1.ManagedFieldsEntry{theirs, ours, ourUpdate, ourStatus}, want: []metav1.ManagedFieldsEntry{ours}},
		{name: "nothing of ours", in: []metav1.ManagedFieldsEntry{theirs}, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cm := &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "files-config", Namespace: "ftp", Labels: map[string]string{"team": "a"}, ManagedFields: slices.Clone(tc.in)},
				Data:       map[string]string{"ftpd.yaml": "x", "other": "y"},
			}
			whole := cm.DeepCopy()
			out, err := keepOurApplyEntry(cm)
			if err != nil {
				t.Fatal(err)
			}
			got := out.(*corev1.ConfigMap).ManagedFields
			if len(got) != len(tc.want) || (len(got) > 0 && got[0].Manager != tc.want[0].Manager) {
				t.Fatalf("managedFields %+v, want %+v", got, tc.want)
			}
			wantOwned, err := corev1ac.ExtractConfigMap(whole, fieldOwner)
			if err != nil {
				t.Fatal(err)
			}
			gotOwned, err := corev1ac.ExtractConfigMap(out.(*corev1.ConfigMap), fieldOwner)
			if err != nil {
				t.Fatal(err)
			}
			if w, g := fmtJSON(mustJSONMap(t, wantOwned)), fmtJSON(mustJSONMap(t, gotOwned)); w != g {
				t.Fatalf("our fields read from the trimmed object %v, from the whole one %v", g, w)
			}
		})
	}
	// A tombstone is stored as it is.
	tomb := toolscache.DeletedFinalStateUnknown{Key: "ftp/files"}
	if out, err := keepOurApplyEntry(tomb); err != nil || out != any(tomb) {
		t.Fatalf("tombstone: %v, %v", out, err)
	}
}

func mustJSONMap(t *testing.T, v any) map[string]any {
	t.Helper()
	m, err := toJSONMap(v)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The cache strips the FTPServers' managedFields; the status writes from the cached copy leave
// the server's as they are, so a GitOps tool's field ownership of the spec survives.
func TestStatusWritesKeepOthersFieldOwnershipOfFTPServers(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	createSecret(t, ns, "alice-ftp", map[string]string{"password": "wonderland"})
	s := newFTPServer(ns, "files")
	s.SetGroupVersionKind(ftpv1alpha1.GroupVersion.WithKind("FTPServer"))
	if err := env.Client.Patch(ctx, s, client.Apply, client.FieldOwner("gitops-tool"), client.ForceOwnership); err != nil { //nolint:staticcheck // a typed object applied as a GitOps tool does
		t.Fatal(err)
	}
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonWaitingForAddress)
	setLoadBalancerIP(t, ns, "files", "203.0.113.8")
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonWaitingForPods)
	got := get(t, ns, "files", &ftpv1alpha1.FTPServer{})
	if !slices.ContainsFunc(got.ManagedFields, func(f metav1.ManagedFieldsEntry) bool {
		return f.Manager == "gitops-tool" && f.Operation == metav1.ManagedFieldsOperationApply
	}) {
		t.Fatalf("after status writes, the FTPServer's managedFields lost the GitOps tool's entry: %+v", got.ManagedFields)
	}
	if got.Status.ObservedGeneration == 0 {
		t.Fatal("no status written: the test proves nothing")
	}
}

// fmtJSON is m as JSON, its keys sorted.
func fmtJSON(m map[string]any) string {
	b, _ := json.Marshal(m)
	return string(b)
}
