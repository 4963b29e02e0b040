package harness

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// runGarbageCollector stands in for kube-controller-manager's garbage collector (envtest runs
// none): objects whose FTPServer owner is gone are deleted. Objects without an owner reference,
// such as claims with reclaimPolicy Retain, stay.
func (h *Harness) runGarbageCollector(ctx context.Context) {
	h.poll(ctx, 500*time.Millisecond, "gc", h.collectGarbage)
}

func (h *Harness) collectGarbage(ctx context.Context) error {
	var servers ftpv1alpha1.FTPServerList
	if err := h.Client.List(ctx, &servers); err != nil {
		return err
	}
	alive := map[types.UID]bool{}
	for _, s := range servers.Items {
		alive[s.UID] = true
	}
	lists := []client.ObjectList{
		&appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.ConfigMapList{}, &corev1.SecretList{},
		&networkingv1.NetworkPolicyList{}, &corev1.PersistentVolumeClaimList{},
	}
	for _, list := range lists {
		if err := h.Client.List(ctx, list); err != nil {
			continue
		}
		_ = meta.EachListItem(list, func(o k8sruntime.Object) error {
			obj := o.(client.Object)
			for _, ref := range obj.GetOwnerReferences() {
				if ref.Kind == "FTPServer" && !alive[ref.UID] && obj.GetDeletionTimestamp() == nil {
					h.logf("gc: deleting %T %s/%s (owner FTPServer %s is gone)", obj, obj.GetNamespace(), obj.GetName(), ref.Name)
					_ = h.Client.Delete(ctx, obj, client.PropagationPolicy("Background"))
				}
			}
			return nil
		})
	}
	return nil
}
