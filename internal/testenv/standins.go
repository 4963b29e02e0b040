package testenv

import (
	"context"
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// Stand-ins for tests that run the operator against an API server alone (no kubelet, no
// kube-controller-manager): the controller tests, the GitOps health tests and the controller
// benchmark. The e2e harness runs the real controllers and daemons instead.

// StartDeploymentPod plays the Deployment controller and the first moments of the kubelet for a
// Deployment of one replica: its status says the latest generation is rolled out and available,
// and its pod "<name>-standin" exists (created from the template if missing) but is not Ready
// yet. MarkDeploymentAvailable goes on from there; a test that calls this alone holds the moment
// in between, which a real cluster passes through too.
func StartDeploymentPod(ctx context.Context, c client.Client, namespace, name string) (*corev1.Pod, error) {
	var dep appsv1.Deployment
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &dep); err != nil {
			return err
		}
		dep.Status = appsv1.DeploymentStatus{
			ObservedGeneration: dep.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1,
		}
		return c.Status().Update(ctx, &dep)
	})
	if err != nil {
		return nil, fmt.Errorf("mark Deployment %s/%s available: %w", namespace, name, err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: name + "-standin", Namespace: namespace,
		Labels: dep.Spec.Template.Labels, Annotations: dep.Spec.Template.Annotations,
	}, Spec: dep.Spec.Template.Spec}
	if err := c.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create stand-in pod of %s/%s: %w", namespace, name, err)
	}
	return pod, nil
}

// MarkDeploymentAvailable plays the Deployment controller and the kubelet for a Deployment of
// one replica: its status says the latest generation is rolled out and available, one Ready Pod
// of its template exists (created if missing, its status set), so that the operator's readiness
// handshake finds a pod to ask, and an EndpointSlice of the Service of the same name lists it.
func MarkDeploymentAvailable(ctx context.Context, c client.Client, namespace, name string) error {
	pod, err := StartDeploymentPod(ctx, c, namespace, name)
	if err != nil {
		return err
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		pod.Status = corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "203.0.113.250",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		}
		return c.Status().Update(ctx, pod)
	})
	if err != nil {
		return fmt.Errorf("report stand-in pod of %s/%s ready: %w", namespace, name, err)
	}
	// Play the EndpointSlice controller: the Service of the same name lists the pod as ready.
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-standin", Namespace: namespace, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{pod.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: pod.Name, UID: pod.UID},
		}},
	}
	if err := c.Create(ctx, slice); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create stand-in EndpointSlice of %s/%s: %w", namespace, name, err)
	}
	return nil
}

// MarkStatefulSetServing plays the StatefulSet controller, the kubelet and the EndpointSlice
// controller for a StatefulSet of several replicas of which the ordinals in serving run: its
// status counts them as updated and available at the latest generation, a Ready pod
// <name>-<ordinal> of its template exists for each (the others are deleted), and an
// EndpointSlice of the Service of the same name lists them.
func MarkStatefulSetServing(ctx context.Context, c client.Client, namespace, name string, serving ...int) error {
	var sts appsv1.StatefulSet
	n := int32(len(serving))
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &sts); err != nil {
			return err
		}
		sts.Status = appsv1.StatefulSetStatus{
			ObservedGeneration: sts.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n, CurrentReplicas: n,
			CurrentRevision: "standin", UpdateRevision: "standin",
		}
		return c.Status().Update(ctx, &sts)
	})
	if err != nil {
		return fmt.Errorf("mark StatefulSet %s/%s serving: %w", namespace, name, err)
	}
	want := map[string]bool{}
	var endpoints []discoveryv1.Endpoint
	for _, i := range serving {
		podName := fmt.Sprintf("%s-%d", name, i)
		want[podName] = true
		labels := map[string]string{"statefulset.kubernetes.io/pod-name": podName}
		for k, v := range sts.Spec.Template.Labels {
			labels[k] = v
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: namespace, Labels: labels,
			Annotations: sts.Spec.Template.Annotations}, Spec: sts.Spec.Template.Spec}
		if err := c.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create stand-in pod %s/%s: %w", namespace, podName, err)
		}
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
				return err
			}
			pod.Status = corev1.PodStatus{
				Phase: corev1.PodRunning, PodIP: fmt.Sprintf("203.0.113.%d", 200+i),
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			}
			return c.Status().Update(ctx, pod)
		})
		if err != nil {
			return fmt.Errorf("report stand-in pod %s/%s ready: %w", namespace, podName, err)
		}
		endpoints = append(endpoints, discoveryv1.Endpoint{
			Addresses: []string{pod.Status.PodIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: pod.Name, UID: pod.UID},
		})
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels(sts.Spec.Selector.MatchLabels)); err != nil {
		return err
	}
	for i := range pods.Items {
		if !want[pods.Items[i].Name] {
			if err := c.Delete(ctx, &pods.Items[i], client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("delete stand-in pod %s: %w", pods.Items[i].Name, err)
			}
		}
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-standin", Namespace: namespace, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	_, err = controllerutil.CreateOrUpdate(ctx, c, slice, func() error {
		slice.Endpoints = endpoints
		return nil
	})
	if err != nil {
		return fmt.Errorf("stand-in EndpointSlice of %s/%s: %w", namespace, name, err)
	}
	return nil
}

// InstantDaemons answers the operator's readiness handshake (controllers.DaemonConfigProber) as
// daemons whose kubelet refreshes volumes at once would: each pod serves the ConfigMap its
// "config" volume names and the Secrets its "users" and "tls" volumes name, as they are now.
// Hold freezes a pod on the inputs it serves at that moment, as a kubelet that has not synced the
// pod yet.
type InstantDaemons struct {
	Client client.Reader

	mu   sync.Mutex
	held map[string]fileconfig.ServedConfig // namespace/pod -> inputs served
}

// ServedConfig implements controllers.DaemonConfigProber.
func (d *InstantDaemons) ServedConfig(ctx context.Context, pod *corev1.Pod) (fileconfig.ServedConfig, error) {
	d.mu.Lock()
	served, held := d.held[pod.Namespace+"/"+pod.Name]
	d.mu.Unlock()
	if held {
		return served, nil
	}
	return d.current(ctx, pod)
}

// Hold makes a pod keep serving the inputs it serves now, until Release.
func (d *InstantDaemons) Hold(ctx context.Context, pod *corev1.Pod) error {
	served, err := d.current(ctx, pod)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.held == nil {
		d.held = map[string]fileconfig.ServedConfig{}
	}
	d.held[pod.Namespace+"/"+pod.Name] = served
	return nil
}

// Release lets a held pod serve the current inputs again.
func (d *InstantDaemons) Release(pod *corev1.Pod) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.held, pod.Namespace+"/"+pod.Name)
}

// current reads the pod's volumes' sources as a daemon that just reloaded them would report them.
func (d *InstantDaemons) current(ctx context.Context, pod *corev1.Pod) (fileconfig.ServedConfig, error) {
	var served fileconfig.ServedConfig
	found := false
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.Name == "config" && v.ConfigMap != nil:
			var cm corev1.ConfigMap
			if err := d.Client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: v.ConfigMap.Name}, &cm); err != nil {
				return served, fmt.Errorf("config of pod %s: %w", pod.Name, err)
			}
			served.ConfigSHA256, found = fileconfig.ContentDigest([]byte(cm.Data[fileconfig.ConfigFileName])), true
		case (v.Name == "users" || v.Name == "tls") && v.Secret != nil:
			var secret corev1.Secret
			if err := d.Client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: v.Secret.SecretName}, &secret); err != nil {
				return served, fmt.Errorf("%s of pod %s: %w", v.Name, pod.Name, err)
			}
			if v.Name == "users" {
				served.UsersSHA256 = fileconfig.ContentDigest(secret.Data[fileconfig.UsersFileName])
			} else {
				served.CertificateSHA256 = fileconfig.ContentDigest(secret.Data[corev1.TLSCertKey])
			}
		}
	}
	if !found {
		return served, fmt.Errorf("pod %s mounts no config volume", pod.Name)
	}
	return served, nil
}
