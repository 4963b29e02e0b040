package controllers

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// claimsFor builds the claims of the volumes declared with a template. A claim only carries an
// owner reference (and so goes with the FTPServer) when its reclaim policy is Delete: by default
// data outlives the FTPServer, and a re-created FTPServer of the same name adopts its claims.
func claimsFor(s *ftpv1alpha1.FTPServer) []*corev1.PersistentVolumeClaim {
	var claims []*corev1.PersistentVolumeClaim
	for _, v := range s.Spec.Volumes {
		t := v.ClaimTemplate
		if t == nil {
			continue
		}
		meta := metav1.ObjectMeta{Name: claimName(s, v), Namespace: s.Namespace, Labels: commonLabels(s)}
		meta.Labels[labelServer] = s.Name
		if t.ReclaimPolicy == ftpv1alpha1.ReclaimDelete {
			meta.OwnerReferences = []metav1.OwnerReference{ownerReference(s)}
		}
		modes := t.AccessModes
		if len(modes) == 0 {
			modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
		}
		claims = append(claims, &corev1.PersistentVolumeClaim{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
			ObjectMeta: meta,
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      modes,
				StorageClassName: t.StorageClassName,
				Resources: corev1.VolumeResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceStorage: t.Size},
				},
			},
		})
	}
	return claims
}
