// Package v1alpha1 contains the API of ftp.kubeftp.dev/v1alpha1: the FTPServer kind.
// +kubebuilder:object:generate=true
// +groupName=ftp.kubeftp.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "ftp.kubeftp.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a runtime.Scheme. It is
	// apimachinery's, so the API package needs nothing from controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers the kinds and the group version's common meta types (list and get
// options, watch events).
func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion, &FTPServer{}, &FTPServerList{})
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
