// Command bench-controller measures the FTPServer controller at scale against the source-built
// kube-apiserver and etcd: N FTPServers are created at once and the manager reconciles them.
// It prints the time until every owned object exists and every server is Ready (with the test
// harness playing load balancer and kubelet), the API writes per FTPServer during that and in a
// quiet period afterwards, and the process's peak memory.
//
// Usage: KUBEBUILDER_ASSETS=$(hack/control-plane.sh) go run ./hack/bench-controller -n 100 -n 500
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/controllers"
	"github.com/kubeftp/ftp-operator/internal/poll"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

type sizes []int

func (s *sizes) String() string { return fmt.Sprint(*s) }
func (s *sizes) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return fmt.Errorf("want a positive number, got %q", v)
	}
	*s = append(*s, n)
	return nil
}

// countingTransport counts the manager's mutating API requests, in total and by verb and
// resource (e.g. "PATCH configmaps", "PUT ftpservers/status"), so that a regression in writes
// per server says which write it is.
type countingTransport struct {
	next   http.RoundTripper
	writes atomic.Int64
	mu     sync.Mutex
	byKind map[string]int
	// reads are the GETs and LISTs (not watches) by resource: uncached reads cost the API
	// server as much as many writes.
	reads map[string]int
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		// Events are bookkeeping, not object writes.
		if !strings.Contains(req.URL.Path, "/events") {
			c.writes.Add(1)
			c.mu.Lock()
			if c.byKind == nil {
				c.byKind = map[string]int{}
			}
			c.byKind[req.Method+" "+resourceOf(req.URL.Path)]++
			c.mu.Unlock()
		}
	case http.MethodGet:
		if req.URL.Query().Get("watch") != "true" {
			c.mu.Lock()
			if c.reads == nil {
				c.reads = map[string]int{}
			}
			c.reads["GET "+resourceOf(req.URL.Path)]++
			c.mu.Unlock()
		}
	}
	return c.next.RoundTrip(req)
}

// readSnapshot returns the read counts by resource so far.
func (c *countingTransport) readSnapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.reads))
	for k, v := range c.reads {
		out[k] = v
	}
	return out
}

// snapshot returns the counts by verb and resource so far.
func (c *countingTransport) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.byKind))
	for k, v := range c.byKind {
		out[k] = v
	}
	return out
}

// resourceOf names the resource of an API path: /api/v1/namespaces/x/configmaps/y is
// "configmaps", .../ftpservers/y/status is "ftpservers/status".
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		if p == "namespaces" && i+2 < len(parts) {
			rest := parts[i+2:]
			if len(rest) >= 3 {
				return rest[0] + "/" + rest[2]
			}
			return rest[0]
		}
	}
	return path
}

// breakdown prints per-server counts by verb and resource, largest first.
func breakdown(counts map[string]int, n int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %.2f, ", k, float64(counts[k])/float64(n))
	}
	return strings.TrimSuffix(b.String(), ", ")
}

func main() { os.Exit(bench()) }

// memProfile and apiProfile are the -memprofile and -apiserver-cpuprofile flags.
var memProfile, apiProfile *string

// bench runs the rounds and returns the exit code, so that the control plane is stopped on
// every way out.
func bench() int {
	var ns sizes
	flag.Var(&ns, "n", "number of FTPServers (repeatable; default 100 and 500)")
	quiet := flag.Duration("quiet", 30*time.Second, "steady-state period in which writes are counted")
	workers := flag.Int("workers", 0, "MaxConcurrentReconciles of the manager (0: controllers.DefaultMaxConcurrentReconciles)")
	memProfile = flag.String("memprofile", "", "write a heap profile of this process when all servers of the last round are Ready to this file")
	qps := flag.Float64("qps", 0, "the manager client's QPS (0: controllers.DefaultKubeAPIQPS); the burst is twice it")
	apiProfile = flag.String("apiserver-cpuprofile", "", "write a CPU profile of the kube-apiserver over the first 20 s after the last round's creation begins to this file")
	memLimit := flag.String("memlimit", "", "a soft memory limit for this process only, as GOMEMLIMIT takes it (e.g. 100MiB); the environment variable would reach the kube-apiserver and etcd too")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process (manager and harness) from create to all Ready of the last round to this file")
	flag.Parse()
	if len(ns) == 0 {
		ns = sizes{100, 500}
	}
	ctrl.SetLogger(logr.Discard())
	if *memLimit != "" {
		limit, err := resource.ParseQuantity(strings.TrimSuffix(*memLimit, "B"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-controller: -memlimit:", err)
			return 2
		}
		debug.SetMemoryLimit(limit.Value())
	}

	env, reason, err := testenv.Start()
	if err != nil || env == nil {
		fmt.Fprintln(os.Stderr, "bench-controller: no control plane:", err, reason)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench-controller: stop the control plane:", err)
		}
	}()

	fmt.Printf("| FTPServers | all objects exist | all Ready | writes/server (converge) | writes/server (%s quiet) | peak heap | peak RSS | CPU to Ready | load average at start |\n", *quiet)
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for round, n := range ns {
		profile := ""
		if round == len(ns)-1 {
			profile = *cpuProfile
		}
		row, err := run(env, n, fmt.Sprintf("bench%d", round), *quiet, *workers, float32(*qps), profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-controller:", err)
			return 1
		}
		fmt.Println(row)
	}
	return 0
}

func run(env *testenv.Env, n int, prefix string, quiet time.Duration, workers int, qps float32, cpuProfile string) (string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := loadAverage()
	counter := &countingTransport{}
	cfg := rest.CopyConfig(env.Config)
	// The manager's own client defaults (controllers.DefaultKubeAPIQPS and Burst, and
	// DefaultMaxConcurrentReconciles) are what is measured.
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter }

	mgr, err := controllers.NewManager(cfg, controllers.ManagerOptions{
		Scheme: env.Scheme, DaemonImage: "example.invalid/ftp:bench",
		ConfigProber: &testenv.InstantDaemons{Client: env.Client},
		// Each round starts a fresh manager with the same controller name.
		SkipNameValidation:      true,
		MaxConcurrentReconciles: workers,
		KubeAPIQPS:              qps,
		KubeAPIBurst:            int(2 * qps),
	})
	if err != nil {
		return "", err
	}
	stop := testenv.RunManager(mgr, nil)
	defer func() { _ = stop() }()
	peakHeap := samplePeakHeap(ctx)

	c := env.Client
	watched, err := watchRound(ctx, env.Config, env.Scheme)
	if err != nil {
		return "", err
	}
	namespaces := make([]string, n)
	for i := range n {
		namespaces[i] = fmt.Sprintf("%s-%d", prefix, i)
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespaces[i]}}); err != nil {
			return "", err
		}
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pw", Namespace: namespaces[i]}, StringData: map[string]string{"password": "p" + strconv.Itoa(i)}}); err != nil {
			return "", err
		}
	}
	stopProfile, err := startProfile(cpuProfile)
	if err != nil {
		return "", err
	}
	defer stopProfile()
	if cpuProfile != "" && *apiProfile != "" {
		go profileAPIServer(ctx, env.Config, *apiProfile, 20*time.Second)
	}
	start := time.Now()
	cpu := startCPU()
	for _, ns := range namespaces {
		s := &ftpv1alpha1.FTPServer{
			ObjectMeta: metav1.ObjectMeta{Name: "ftp", Namespace: ns},
			Spec: ftpv1alpha1.FTPServerSpec{
				Volumes: []ftpv1alpha1.FTPVolume{{Name: "data", ClaimTemplate: &ftpv1alpha1.ClaimTemplate{Size: resource.MustParse("1Gi")}}},
				Users:   []ftpv1alpha1.FTPUser{{Name: "user", PasswordSecretRef: ftpv1alpha1.SecretKeyRef{Name: "pw"}}},
				// 21 node ports per LoadBalancer Service would exhaust the 2768-port range at
				// about 130 servers; at this scale a platform turns the allocation off.
				Service: ftpv1alpha1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr.To(false)},
			},
		}
		if err := c.Create(ctx, s); err != nil {
			return "", err
		}
	}

	// Play load balancer and kubelet as the objects appear: the load balancer gives each
	// Service its address, the kubelet runs each Deployment's pod. All owned objects exist once
	// every Deployment does (it is applied last).
	allExist, err := playCluster(ctx, c, watched, prefix, n)
	if err != nil {
		return "", err
	}
	if err := poll.Until(ctx, 10*time.Minute, 200*time.Millisecond, fmt.Sprintf("%d Ready FTPServers", n), func(ctx context.Context) (bool, error) {
		return countReady(ctx, watched, prefix) >= n, nil
	}); err != nil {
		return "", err
	}
	allReady := time.Since(start)
	cpuReady := cpu.sample()
	stopProfile()
	if cpuProfile != "" && *memProfile != "" {
		if err := writeHeapProfile(*memProfile); err != nil {
			return "", err
		}
	}
	converge := counter.writes.Load()
	convergeKinds := counter.snapshot()
	convergeReads := counter.readSnapshot()

	time.Sleep(quiet)
	steady := counter.writes.Load() - converge
	quietKinds := counter.snapshot()
	for k, v := range convergeKinds {
		if quietKinds[k] -= v; quietKinds[k] == 0 {
			delete(quietKinds, k)
		}
	}
	fmt.Fprintf(os.Stderr, "n=%d writes/server converging: %s\n", n, breakdown(convergeKinds, n))
	fmt.Fprintf(os.Stderr, "n=%d writes/server in the quiet window: %s\n", n, breakdown(quietKinds, n))
	fmt.Fprintf(os.Stderr, "n=%d uncached reads/server converging: %s\n", n, breakdown(convergeReads, n))
	fmt.Fprintf(os.Stderr, "n=%d CPU seconds from create to all Ready: %s\n", n, cpuReady)

	return fmt.Sprintf("| %d | %.1f s | %.1f s | %.1f | %.2f | %d MiB | %d MiB | %.0f s | %s |", n, allExist.Seconds(), allReady.Seconds(),
		float64(converge)/float64(n), float64(steady)/float64(n), peakHeap()>>20, peakRSS()>>10, cpuReady.total(), load), nil
}

func countReady(ctx context.Context, c client.Reader, prefix string) int {
	var list ftpv1alpha1.FTPServerList
	if err := c.List(ctx, &list); err != nil {
		return 0
	}
	n := 0
	for _, s := range list.Items {
		if strings.HasPrefix(s.Namespace, prefix+"-") && meta.IsStatusConditionTrue(s.Status.Conditions, ftpv1alpha1.ConditionReady) {
			n++
		}
	}
	return n
}

func forEach(items []string, fn func(string) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(items))
	sem := make(chan struct{}, 16)
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(it); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// samplePeakHeap records the highest in-use heap until ctx ends.
func samplePeakHeap(ctx context.Context) func() uint64 {
	var peak atomic.Uint64
	go func() {
		var ms runtime.MemStats
		for ctx.Err() == nil {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return peak.Load
}

// peakRSS is the process's high-water resident set in KiB (VmHWM), manager and harness together.
func peakRSS() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			v, _ := strconv.ParseUint(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return 0
}
