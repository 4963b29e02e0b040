package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// cacheOptions keep the manager's cache small: it holds every watched object of the cluster,
// and managedFields are often the largest part of one (an entry per writer, each a copy of the
// field paths it set).
//
// Our owned kinds keep only our own apply entry: apply compares the fields we own, read from it
// (ownedFields), so that steady state writes nothing. What the others (kube-controller-manager
// on status, a user's kubectl) own is never read from the cache. The cached objects are never
// sent back whole: owned objects are written by apply documents built from the desired set.
//
// FTPServers keep none: nothing reads theirs. Their status is written with Update from the
// cached copy; the status subresource keeps the object's managedFields as they are
// (TestStatusWritesKeepOthersFieldOwnershipOfFTPServers), so a GitOps tool's field ownership of
// the spec survives.
func cacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: keepOurApplyEntry,
		ByObject: map[client.Object]cache.ByObject{
			&ftpv1alpha1.FTPServer{}: {Transform: cache.TransformStripManagedFields()},
		},
	}
}

// keepOurApplyEntry is a cache transform that drops every managedFields entry but our field
// manager's apply entry on the object itself (not a subresource), the one ownedFields reads.
var keepOurApplyEntry toolscache.TransformFunc = func(in any) (any, error) {
	obj, err := meta.Accessor(in)
	if err != nil {
		return in, nil // a tombstone or another wrapper: stored as it is
	}
	fields := obj.GetManagedFields()
	if fields == nil {
		return in, nil
	}
	kept := fields[:0:0]
	for _, f := range fields {
		if ourApplyEntry(f) {
			kept = append(kept, f)
		}
	}
	if len(kept) == len(fields) {
		return in, nil
	}
	if len(kept) == 0 {
		kept = nil
	}
	obj.SetManagedFields(kept)
	return in, nil
}

// ourApplyEntry is the managedFields entry that the applyconfigurations' Extract functions read
// for fieldOwner.
func ourApplyEntry(f metav1.ManagedFieldsEntry) bool {
	return f.Manager == fieldOwner && f.Operation == metav1.ManagedFieldsOperationApply && f.Subresource == ""
}
