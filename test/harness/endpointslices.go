package harness

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// endpointSliceManager marks the slices the loopback stand-in writes; the real EndpointSlice
// controller leaves slices of other managers alone.
const endpointSliceManager = "harness.kubeftp.dev"

// publishLoopbackEndpoints stands in for the EndpointSlice controller in loopback mode only.
// There the pods' IPs are loopback addresses, which the API server refuses in EndpointSlices
// (and so the real controller cannot publish them). The stand-in publishes each Service's pods
// as FQDN endpoints instead ("127-0-10-3.loopback.harness.invalid"), with the pod as target and
// its readiness, which is what consumers such as the operator read.
func (h *Harness) publishLoopbackEndpoints(ctx context.Context, svcs []corev1.Service) error {
	for i := range svcs {
		svc := &svcs[i]
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		want := h.loopbackSliceFor(svc)
		var have discoveryv1.EndpointSlice
		err := h.Client.Get(ctx, client.ObjectKeyFromObject(want), &have)
		switch {
		case apierrors.IsNotFound(err):
			if err := h.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("publish endpoints of %s/%s: %w", svc.Namespace, svc.Name, err)
			}
		case err != nil:
			return fmt.Errorf("read endpoints of %s/%s: %w", svc.Namespace, svc.Name, err)
		case !equality.Semantic.DeepEqual(have.Endpoints, want.Endpoints) || !equality.Semantic.DeepEqual(have.Ports, want.Ports):
			have.Endpoints, have.Ports = want.Endpoints, want.Ports
			if err := h.Client.Update(ctx, &have); err != nil && !apierrors.IsConflict(err) {
				return fmt.Errorf("update endpoints of %s/%s: %w", svc.Namespace, svc.Name, err)
			}
		}
	}
	return nil
}

// loopbackSliceFor is the FQDN EndpointSlice of a Service's pods on the node; it is owned by
// the Service, so the real garbage collector removes it with the Service.
func (h *Harness) loopbackSliceFor(svc *corev1.Service) *discoveryv1.EndpointSlice {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: svc.Name + "-loopback", Namespace: svc.Namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: endpointSliceManager},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		AddressType: discoveryv1.AddressTypeFQDN,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	for _, p := range svc.Spec.Ports {
		slice.Ports = append(slice.Ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Protocol: ptr.To(p.Protocol), Port: ptr.To(p.TargetPort.IntVal)})
	}
	for _, p := range h.node.podsMatching(svc.Namespace, svc.Spec.Selector) {
		ready := p.ready.Load() && !p.stopped.Load()
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{strings.ReplaceAll(p.ip, ".", "-") + ".loopback.harness.invalid"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(p.stopped.Load())},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.namespace, Name: p.name, UID: p.uid},
			NodeName:   ptr.To(NodeName),
		})
	}
	sort.Slice(slice.Endpoints, func(i, j int) bool { return slice.Endpoints[i].TargetRef.Name < slice.Endpoints[j].TargetRef.Name })
	return slice
}
