package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// StorageClassName is the cluster's default StorageClass: local volumes on the node,
	// provisioned when the scheduler has placed the claim's first pod (WaitForFirstConsumer,
	// as local storage must be).
	StorageClassName = "realnode-local"
	provisionerName  = "realnode.ftp-operator.test/local"

	annSelectedNode  = "volume.kubernetes.io/selected-node"
	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
)

func (c *Cluster) createStorageClass(ctx context.Context) error {
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        StorageClassName,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		Provisioner:       provisionerName,
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
	}
	if err := c.Client.Create(ctx, sc); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create StorageClass %s: %w", StorageClassName, err)
	}
	return nil
}

// runProvisioner is the external provisioner of StorageClassName, in the way
// local-path-provisioner works: for each claim of the class that the scheduler placed on the
// node it makes a directory and a local PersistentVolume pre-bound to the claim; the real PV
// controller completes the binding. Released volumes of reclaim policy Delete are deleted with
// their directory; Retain leaves both, as the policy says.
//
// The directory is created root-owned and never chowned: local volumes are fsGroup-managed, so
// the kubelet gives the pod's fsGroup (65532 for the daemon) group ownership and write access
// on first mount. hostPath volumes would not be.
func (c *Cluster) runProvisioner(ctx context.Context) {
	c.poll(ctx, 250*time.Millisecond, "provisioner", c.syncVolumes)
}

func (c *Cluster) syncVolumes(ctx context.Context) error {
	var claims corev1.PersistentVolumeClaimList
	if err := c.Client.List(ctx, &claims); err != nil {
		return fmt.Errorf("list claims: %w", err)
	}
	for i := range claims.Items {
		pvc := &claims.Items[i]
		if ptr.Deref(pvc.Spec.StorageClassName, "") != StorageClassName || pvc.Spec.VolumeName != "" ||
			pvc.Status.Phase != corev1.ClaimPending || pvc.DeletionTimestamp != nil {
			continue
		}
		if c.nodeOf(pvc.Annotations[annSelectedNode]) == nil {
			continue // not scheduled yet (or to a node of another cluster)
		}
		if err := c.provision(ctx, pvc); err != nil {
			return err
		}
	}

	var volumes corev1.PersistentVolumeList
	if err := c.Client.List(ctx, &volumes); err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	for i := range volumes.Items {
		pv := &volumes.Items[i]
		if pv.Annotations[annProvisionedBy] != provisionerName || pv.Status.Phase != corev1.VolumeReleased ||
			pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.DeletionTimestamp != nil {
			continue
		}
		if pv.Spec.Local != nil && strings.HasPrefix(pv.Spec.Local.Path, c.volumesDir()+"/") {
			if err := os.RemoveAll(pv.Spec.Local.Path); err != nil {
				return fmt.Errorf("remove the directory of %s: %w", pv.Name, err)
			}
		}
		if err := c.Client.Delete(ctx, pv); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete released %s: %w", pv.Name, err)
		}
		c.logf("provisioner: deleted released volume %s", pv.Name)
	}
	return nil
}

func (c *Cluster) volumesDir() string { return filepath.Join(c.dir, "volumes") }

func (c *Cluster) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	name := "pvc-" + string(pvc.UID)
	var existing corev1.PersistentVolume
	if err := c.Client.Get(ctx, client.ObjectKey{Name: name}, &existing); err == nil {
		return nil // made on an earlier pass; the PV controller binds it
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("get %s: %w", name, err)
	}
	if pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return fmt.Errorf("claim %s/%s asks for a block volume; %s provides filesystems only", pvc.Namespace, pvc.Name, StorageClassName)
	}
	size, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return fmt.Errorf("claim %s/%s requests no storage size", pvc.Namespace, pvc.Name)
	}
	dir := filepath.Join(c.volumesDir(), pvc.Namespace, pvc.Name+"-"+string(pvc.UID)[:8])
	// A local volume lives on the node the scheduler chose. A claim that asks for ReadWriteMany
	// gets one that every node mounts: the directory is on the machine's file system, which all
	// the nodes' mount namespaces share, as a network file system (NFS, CephFS) would be shared.
	nodes := []string{pvc.Annotations[annSelectedNode]}
	if slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
		nodes = c.NodeNames()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create the directory for %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{annProvisionedBy: provisionerName},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              StorageClassName,
			VolumeMode:                    ptr.To(corev1.PersistentVolumeFilesystem),
			ClaimRef: &corev1.ObjectReference{
				APIVersion: "v1", Kind: "PersistentVolumeClaim",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: nodes,
				}}}},
			}},
		},
	}
	var class storagev1.StorageClass
	if err := c.Client.Get(ctx, client.ObjectKey{Name: StorageClassName}, &class); err == nil && class.ReclaimPolicy != nil {
		pv.Spec.PersistentVolumeReclaimPolicy = *class.ReclaimPolicy
	}
	if err := c.Client.Create(ctx, pv); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create %s for %s/%s: %w", name, pvc.Namespace, pvc.Name, err)
	}
	c.logf("provisioner: %s for claim %s/%s at %s", name, pvc.Namespace, pvc.Name, dir)
	return nil
}

// ClaimPath is the directory on the node backing a bound PersistentVolumeClaim, or "" when the
// claim is not bound (yet) to a volume of this cluster's provisioner.
func (c *Cluster) ClaimPath(namespace, claim string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pvc corev1.PersistentVolumeClaim
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: claim}, &pvc); err != nil || pvc.Spec.VolumeName == "" {
		return ""
	}
	var pv corev1.PersistentVolume
	if err := c.Client.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, &pv); err != nil || pv.Spec.Local == nil {
		return ""
	}
	return pv.Spec.Local.Path
}
