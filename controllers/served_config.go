package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// The readiness handshake. The daemon reads its config (and with it the PASV address) from a
// mounted ConfigMap, which the kubelet rewrites only on its next sync of the pod: a minute or
// more after our update on a real node, and the address is deliberately left out of the restart
// checksum so that a new address never restarts the pods. A Deployment that is available
// therefore says nothing about the address its pods advertise. So before Ready, the operator
// asks every ready pod which config it serves (fileconfig.ServedConfigPath) and compares the
// digest with the ConfigMap it rendered. To make the wait short, it writes the version of the
// pod's mounted inputs (config, users, TLS Secret) into an annotation of each pod that serves
// older ones: an update of the pod object makes the kubelet sync that pod, and so rewrite its
// volumes, at once. A new server's pods start with the config that carries the address (the
// config and the workload wait for it, desiredSet.addressPending), serve it from the start and
// are not annotated.

// servedConfigRecheck is how soon a reconcile that waits for pods to serve the current config
// looks again.
const servedConfigRecheck = 2 * time.Second

// podsRecheck is how often a rollout that is not done is looked at again: pod states are not
// watched (the operator caches no pods).
const podsRecheck = 5 * time.Second

// DaemonConfigProber asks a daemon pod which inputs it serves: the digests of its ftpd.yaml,
// its users file and its certificate (fileconfig.ServedConfig).
type DaemonConfigProber interface {
	ServedConfig(ctx context.Context, pod *corev1.Pod) (fileconfig.ServedConfig, error)
}

// HTTPDaemonConfigProber asks the pod's ops port over HTTP: the operator runs in the cluster
// and reaches pod IPs, and our NetworkPolicy admits it to that port.
type HTTPDaemonConfigProber struct {
	// DialContext connects to the pod; nil uses a plain net.Dialer. Tests route it into the
	// network the pods live in.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout per request; zero means 2 s.
	Timeout time.Duration
}

// ServedConfig implements DaemonConfigProber.
func (p *HTTPDaemonConfigProber) ServedConfig(ctx context.Context, pod *corev1.Pod) (fileconfig.ServedConfig, error) {
	if pod.Status.PodIP == "" {
		return fileconfig.ServedConfig{}, fmt.Errorf("pod %s has no IP yet", pod.Name)
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	transport := &http.Transport{DisableKeepAlives: true, DialContext: p.DialContext}
	httpc := &http.Client{Timeout: timeout, Transport: transport}
	url := "http://" + net.JoinHostPort(pod.Status.PodIP, fmt.Sprint(opsContainerPort)) + fileconfig.ServedConfigPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fileconfig.ServedConfig{}, err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return fileconfig.ServedConfig{}, fmt.Errorf("ask pod %s which config it serves: %w", pod.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fileconfig.ServedConfig{}, fmt.Errorf("ask pod %s which config it serves: %s answers %s (a daemon older than the operator?)", pod.Name, url, resp.Status)
	}
	var served fileconfig.ServedConfig
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 4096)).Decode(&served); err != nil {
		return fileconfig.ServedConfig{}, fmt.Errorf("ask pod %s which config it serves: %w", pod.Name, err)
	}
	return served, nil
}

// servedConfig is what the handshake found: of the pods that count (ready, not terminating),
// how many serve the current config, and why the others do not.
type servedConfig struct {
	checked bool // false when the rollout is not done yet and nothing was asked
	ready   int
	serving int
	stale   []string // "<pod>: <why>", sorted
	// servingPods are the names of the pods that serve the current inputs.
	servingPods map[string]bool
	// olderPods are the names of the pods that answered with older inputs: only those are
	// known to need a refresh. A pod not ready yet, or not answering, may be starting with the
	// current inputs; writing to it would be a write for nothing (and a race with its start).
	olderPods map[string]bool
	// endpoints counts the ready pods the Service's EndpointSlices list as ready.
	endpoints int
	// inputsVersion is the version of the inputs the serving pods serve.
	inputsVersion string
}

func (c servedConfig) complete(replicas int32) bool {
	return c.serving >= int(replicas) && len(c.stale) == 0
}

func (c servedConfig) message(s *ftpv1alpha1.FTPServer, address string) string {
	msg := fmt.Sprintf("%d of %d ready pods serve the current configuration, users and certificate (PASV address %s); the kubelet refreshes mounted ConfigMaps and Secrets on its next sync of the pod",
		c.serving, max(c.ready, int(replicasOf(s))), address)
	if len(c.stale) > 0 {
		msg += "; " + strings.Join(c.stale, "; ")
	}
	return msg
}

// servedEndpoints counts the ready pods that the Service's EndpointSlices list as ready: until
// then kube-proxy and a load balancer that targets pods do not forward to them, and a client
// would be refused although the pods run.
func (r *FTPServerReconciler) servedEndpoints(ctx context.Context, s *ftpv1alpha1.FTPServer, pods []corev1.Pod) (int, error) {
	var endpointSlices discoveryv1.EndpointSliceList
	if err := r.apiReader.List(ctx, &endpointSlices, client.InNamespace(s.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: s.Name}); err != nil {
		return 0, fmt.Errorf("list EndpointSlices of Service %s/%s: %w", s.Namespace, s.Name, err)
	}
	ours := map[types.UID]bool{}
	for i := range pods {
		if pods[i].DeletionTimestamp == nil && podReady(&pods[i]) {
			ours[pods[i].UID] = true
		}
	}
	listed := map[types.UID]bool{}
	for _, sl := range endpointSlices.Items {
		for _, ep := range sl.Endpoints {
			if ep.TargetRef != nil && ours[ep.TargetRef.UID] && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				listed[ep.TargetRef.UID] = true
			}
		}
	}
	return len(listed), nil
}

// podsOf lists the daemon pods of s from the API server (not a cache: the operator does not hold
// every pod of the cluster in memory).
func (r *FTPServerReconciler) podsOf(ctx context.Context, s *ftpv1alpha1.FTPServer) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := r.apiReader.List(ctx, &pods, client.InNamespace(s.Namespace), client.MatchingLabels(selectorLabels(s))); err != nil {
		return nil, fmt.Errorf("list pods of FTPServer %s/%s: %w", s.Namespace, s.Name, err)
	}
	return pods.Items, nil
}

// announceInputs writes the version of the pod's mounted inputs on each pod that answered with
// older ones and does not carry that version yet, so that the kubelet rewrites its volumes now
// instead of at its next periodic sync. A pod that serves them (one started with them, the
// common first rollout) needs no refresh, and one not ready yet has not said what it serves:
// neither is written to. A pod that starts with older inputs is annotated once it is ready and
// answers, one recheck later.
func (r *FTPServerReconciler) announceInputs(ctx context.Context, pods []corev1.Pod, older map[string]bool, version string) error {
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || !older[p.Name] || p.Annotations[inputsVersionAnnotation] == version {
			continue
		}
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{inputsVersionAnnotation: version}}})
		if err != nil {
			return err
		}
		if err := r.Patch(ctx, p, client.RawPatch(types.MergePatchType, patch)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("annotate pod %s/%s with its inputs' version: %w", p.Namespace, p.Name, err)
		}
	}
	return nil
}

// checkServedConfig asks every ready pod which inputs it serves and compares them with want.
func (r *FTPServerReconciler) checkServedConfig(ctx context.Context, pods []corev1.Pod, want fileconfig.ServedConfig) servedConfig {
	out := servedConfig{checked: true, servingPods: map[string]bool{}, olderPods: map[string]bool{}}
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || !podReady(p) {
			continue
		}
		out.ready++
		got, err := r.ConfigProber.ServedConfig(ctx, p)
		if err != nil {
			out.stale = append(out.stale, err.Error())
			continue
		}
		if old := staleInputs(got, want); len(old) > 0 {
			out.stale = append(out.stale, fmt.Sprintf("pod %s still serves an older %s", p.Name, strings.Join(old, " and ")))
			out.olderPods[p.Name] = true
			continue
		}
		out.serving++
		out.servingPods[p.Name] = true
	}
	sort.Strings(out.stale)
	return out
}

// staleInputs names the inputs a pod serves in another version than want.
func staleInputs(got, want fileconfig.ServedConfig) []string {
	var old []string
	if got.ConfigSHA256 != want.ConfigSHA256 {
		old = append(old, "configuration")
	}
	if got.UsersSHA256 != want.UsersSHA256 {
		old = append(old, "users file")
	}
	if got.CertificateSHA256 != want.CertificateSHA256 {
		old = append(old, "TLS certificate")
	}
	return old
}

// inputsVersion digests what a daemon pod mounts from us. The TLS Secret is not ours: its
// resourceVersion stands for its content (cert-manager rotates it in place).
func inputsVersion(configDigest string, users []byte, tlsSecretVersion string) string {
	return fileconfig.ContentDigest([]byte(configDigest + "\n" + fileconfig.ContentDigest(users) + "\n" + tlsSecretVersion))[:16]
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
