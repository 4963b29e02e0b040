package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"

	"github.com/kubeftp/ftp-operator/internal/testenv"
)

// playCluster plays the load balancer and the kubelet for the n servers of the round as their
// objects appear: each Service gets its load balancer's address as soon as it exists, each
// Deployment its available pod. It looks at them five times a second in watched, a cache of their
// metadata (listing 1000 Deployments from the API server five times a second cost the API
// server and this process more than what is measured), and returns when every Deployment exists and was made available, with the time
// the last one appeared since creation began.
func playCluster(ctx context.Context, c client.Client, watched client.Reader, prefix string, n int) (allExist time.Duration, err error) {
	start := time.Now()
	addressed, available := map[string]bool{}, map[string]bool{}
	deadline := time.Now().Add(10 * time.Minute)
	for len(available) < n {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("after 10 minutes, %d of %d Services addressed and %d Deployments available", len(addressed), n, len(available))
		}
		services, err := namespacesWith(ctx, watched, "Service", "v1", prefix)
		if err != nil {
			return 0, err
		}
		deployments, err := namespacesWith(ctx, watched, "Deployment", "apps/v1", prefix)
		if err != nil {
			return 0, err
		}
		if len(deployments) >= n && allExist == 0 {
			allExist = time.Since(start)
		}
		if err := forEach(newOnes(services, addressed), func(ns string) error { return addressLoadBalancer(ctx, c, ns) }); err != nil {
			return 0, err
		}
		if err := forEach(newOnes(deployments, available), func(ns string) error {
			return testenv.MarkDeploymentAvailable(ctx, c, ns, "ftp")
		}); err != nil {
			return 0, err
		}
		if len(available) < n {
			time.Sleep(200 * time.Millisecond)
		}
	}
	return allExist, nil
}

// newOnes returns the namespaces not done yet and marks them done.
func newOnes(namespaces []string, done map[string]bool) []string {
	var out []string
	for _, ns := range namespaces {
		if !done[ns] {
			done[ns] = true
			out = append(out, ns)
		}
	}
	return out
}

// namespacesWith lists the namespaces of the round that hold an object of the kind named "ftp".
func namespacesWith(ctx context.Context, c client.Reader, kind, apiVersion, prefix string) ([]string, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.APIVersion, list.Kind = apiVersion, kind+"List"
	if err := c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("list %s metadata: %w", kind, err)
	}
	var out []string
	for _, o := range list.Items {
		if o.Name == "ftp" && strings.HasPrefix(o.Namespace, prefix+"-") {
			out = append(out, o.Namespace)
		}
	}
	return out, nil
}

func addressLoadBalancer(ctx context.Context, c client.Client, ns string) error {
	var svc corev1.Service
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ftp"}, &svc); err != nil {
		return err
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}
	return c.Status().Update(ctx, &svc)
}

// loadAverage is /proc/loadavg's 1, 5 and 15 minute averages: the machine is shared, and
// timings mean little without what else ran.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return f[0] + " / " + f[1] + " / " + f[2]
}

// cpuMeter measures the CPU time (user and system) this process and its children (the
// kube-apiserver and etcd that envtest started) spend from startCPU on.
type cpuMeter struct{ base map[string]float64 }

type cpuUsage map[string]float64

func startCPU() cpuMeter { return cpuMeter{base: processCPU()} }

func (m cpuMeter) sample() cpuUsage {
	out := cpuUsage{}
	for name, v := range processCPU() {
		out[name] = v - m.base[name]
	}
	return out
}

func (u cpuUsage) total() float64 {
	var t float64
	for _, v := range u {
		t += v
	}
	return t
}

func (u cpuUsage) String() string {
	names := make([]string, 0, len(u))
	for k := range u {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "%s %.1f s, ", k, u[k])
	}
	fmt.Fprintf(&b, "total %.1f s", u.total())
	return b.String()
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// processCPU reads utime+stime of this process ("bench (manager)") and of each child by its
// command name, from /proc/PID/stat.
func processCPU() map[string]float64 {
	self := os.Getpid()
	out := map[string]float64{}
	if _, _, cpu, ok := procStat(filepath.Join("/proc", "self", "stat")); ok {
		out["bench+manager"] = cpu
	}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		name, ppid, cpu, ok := procStat(filepath.Join("/proc", d.Name(), "stat"))
		if ok && ppid == self {
			out[name] += cpu
		}
	}
	return out
}

func procStat(path string) (name string, ppid int, cpuSeconds float64, ok bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", 0, 0, false
	}
	s := string(data)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", 0, 0, false
	}
	name = s[open+1 : closing]
	f := strings.Fields(s[closing+1:])
	// After the name: state(0) ppid(1) ... utime(11) stime(12).
	if len(f) < 13 {
		return "", 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return name, ppid, (utime + stime) / clockTicks, true
}

// startProfile writes a CPU profile to path until the returned function is called (the first
// call stops it); an empty path profiles nothing.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		})
	}, nil
}

// writeHeapProfile writes the live heap after a collection.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create heap profile: %w", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("write heap profile: %w", err)
	}
	return nil
}

// watchRound starts a cache of what the harness looks at: FTPServers (their status) and the
// metadata of Services and Deployments. Watching costs the API server one event per change;
// polling lists cost it every object at every poll.
func watchRound(ctx context.Context, cfg *rest.Config, scheme *k8sruntime.Scheme) (client.Reader, error) {
	// It reads only names and conditions: no managedFields, and lists share the cached objects
	// (a deep copy of 1000 objects five times a second was a fifth of the process's allocations).
	c, err := cache.New(cfg, cache.Options{Scheme: scheme, DefaultTransform: cache.TransformStripManagedFields(), DefaultUnsafeDisableDeepCopy: ptr.To(true)})
	if err != nil {
		return nil, fmt.Errorf("create the harness's cache: %w", err)
	}
	for _, obj := range []client.Object{&ftpv1alpha1.FTPServer{}, metadataOf("Service", "v1"), metadataOf("Deployment", "apps/v1")} {
		if _, err := c.GetInformer(ctx, obj); err != nil {
			return nil, fmt.Errorf("watch %T: %w", obj, err)
		}
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return nil, fmt.Errorf("the harness's cache did not sync")
	}
	return c, nil
}

func metadataOf(kind, apiVersion string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.APIVersion, m.Kind = apiVersion, kind
	return m
}

// profileAPIServer fetches the kube-apiserver's own CPU profile (/debug/pprof, on by default)
// over d into path; a failure is reported, not fatal.
func profileAPIServer(ctx context.Context, cfg *rest.Config, path string, d time.Duration) {
	httpc, err := rest.HTTPClientFor(cfg)
	if err == nil {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(cfg.Host, "/"), int(d.Seconds())), nil)
		if err == nil {
			var resp *http.Response
			if resp, err = httpc.Do(req); err == nil {
				defer resp.Body.Close()
				var f *os.File
				if f, err = os.Create(path); err == nil {
					_, err = io.Copy(f, resp.Body)
					_ = f.Close()
				}
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-controller: kube-apiserver profile:", err)
	}
}
