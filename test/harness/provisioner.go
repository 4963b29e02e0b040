package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const (
	// StorageClassName is the harness's default StorageClass: hostPath volumes under the work
	// directory, provisioned on demand like a cloud's disks.
	StorageClassName = "harness-hostpath"
	provisionerName  = "harness.kubeftp.dev/hostpath"
	// annStorageProvisioner is what the real PV controller writes on a claim whose class has an
	// external provisioner: the claim waits for that provisioner to create a volume.
	annStorageProvisioner = "volume.kubernetes.io/storage-provisioner"
)

// provisioner stands in for a cloud's dynamic provisioner (the external-provisioner sidecar of a
// CSI driver): for each claim the real PV controller hands to our provisioner, it creates a
// hostPath PersistentVolume under WorkDir/volumes/<namespace>/<claim> pre-bound to the claim,
// which the PV controller then binds; a Released volume whose policy is Delete is removed with
// its directory. Binding, the claim's phase and reclaim are Kubernetes' own.
func (h *Harness) runProvisioner(ctx context.Context) {
	h.syncEvery(ctx, 250*time.Millisecond, "provisioner", h.provision)
}

// createStorageClass makes the default StorageClass (the DefaultStorageClass admission plugin
// then gives it to claims that name none).
func (h *Harness) createStorageClass(ctx context.Context) error {
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: StorageClassName, Annotations: map[string]string{
			"storageclass.kubernetes.io/is-default-class": "true",
		}},
		Provisioner:       provisionerName,
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}
	if err := h.Client.Create(ctx, sc); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create StorageClass %s: %w", StorageClassName, err)
	}
	return nil
}

func (h *Harness) provision(ctx context.Context) error {
	var claims corev1.PersistentVolumeClaimList
	if err := h.Client.List(ctx, &claims); err != nil {
		return fmt.Errorf("list claims: %w", err)
	}
	for i := range claims.Items {
		pvc := &claims.Items[i]
		if pvc.Status.Phase != corev1.ClaimPending || pvc.Spec.VolumeName != "" || pvc.Annotations[annStorageProvisioner] != provisionerName || pvc.DeletionTimestamp != nil {
			continue
		}
		if err := h.provisionClaim(ctx, pvc); err != nil {
			h.logf("provisioner: claim %s/%s: %v", pvc.Namespace, pvc.Name, err)
		}
	}
	var volumes corev1.PersistentVolumeList
	if err := h.Client.List(ctx, &volumes); err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	for i := range volumes.Items {
		pv := &volumes.Items[i]
		if pv.Status.Phase == corev1.VolumeReleased && pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete &&
			pv.Annotations["pv.kubernetes.io/provisioned-by"] == provisionerName && pv.DeletionTimestamp == nil {
			if err := os.RemoveAll(pv.Spec.HostPath.Path); err != nil {
				h.logf("provisioner: remove volume %s: %v", pv.Name, err)
				continue
			}
			if err := h.Client.Delete(ctx, pv); err != nil && !apierrors.IsNotFound(err) {
				h.logf("provisioner: delete volume %s: %v", pv.Name, err)
				continue
			}
			h.logf("provisioner: deleted released volume %s", pv.Name)
		}
	}
	return nil
}

func (h *Harness) provisionClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	dir := h.ClaimPath(pvc.Namespace, pvc.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create volume directory: %w", err)
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "pvc-" + string(pvc.UID),
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": provisionerName},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              ptr.Deref(pvc.Spec.StorageClassName, ""),
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: dir, Type: ptr.To(corev1.HostPathDirectory),
			}},
		},
	}
	if err := h.Client.Create(ctx, pv); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create volume: %w", err)
	}
	h.logf("provisioner: volume %s (%s) for claim %s/%s", pv.Name, filepath.Base(dir), pvc.Namespace, pvc.Name)
	return nil
}
