// Package operatormetrics holds the manager's own metrics beside controller-runtime's: what an
// alert needs to know about each FTPServer and cannot read from the daemons (a server whose pods
// never started has no daemon to scrape).
package operatormetrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// ReadyMetric is the name of the per-FTPServer readiness gauge.
const ReadyMetric = "ftp_operator_ftpserver_ready"

// listTimeout bounds the cache read of one scrape; a cache read does not leave the process, so
// this only matters while the cache is still syncing.
const listTimeout = 5 * time.Second

// Readiness exports, for every FTPServer, whether its Ready condition is True (1) or not (0:
// False, Unknown or not yet reported). It is computed at each scrape from the manager's cache
// rather than set by the reconciler, so it never goes stale when an FTPServer is deleted and
// it needs nothing from the controller.
//
// The labels are namespace and ftpserver, as on the daemons' series (the PodMonitor relabels
// the pods' app.kubernetes.io/instance to ftpserver), so that alerts and dashboards join the two;
// the ServiceMonitor scrapes with honorLabels so that namespace stays the FTPServer's rather
// than the manager's.
//
// It runs as a manager Runnable that needs leader election: only the leading replica exports
// the series, so standby replicas do not duplicate every server under another pod label.
type Readiness struct {
	reader client.Reader
	reg    prometheus.Registerer
	ready  *prometheus.Desc
}

// NewReadiness returns the collector reading FTPServers from reader (the manager's cache); it is
// registered on reg while it runs.
func NewReadiness(reader client.Reader, reg prometheus.Registerer) *Readiness {
	return &Readiness{
		reader: reader,
		reg:    reg,
		ready: prometheus.NewDesc(ReadyMetric,
			"Whether the FTPServer's Ready condition is True (1) or not (0), from the operator's cache.",
			[]string{"namespace", "ftpserver"}, nil),
	}
}

// Start registers the collector and unregisters it when ctx ends (leadership lost, shutdown),
// so that a later manager in the same process can register its own.
func (r *Readiness) Start(ctx context.Context) error {
	if err := r.reg.Register(r); err != nil {
		return err
	}
	<-ctx.Done()
	r.reg.Unregister(r)
	return nil
}

// NeedLeaderElection makes the manager start the collector on the leader only.
func (r *Readiness) NeedLeaderElection() bool { return true }

// Describe implements prometheus.Collector.
func (r *Readiness) Describe(ch chan<- *prometheus.Desc) { ch <- r.ready }

// Collect implements prometheus.Collector. A failed read is logged and exports nothing rather
// than failing the whole scrape, which would also hide controller-runtime's metrics.
func (r *Readiness) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	var list ftpv1alpha1.FTPServerList
	if err := r.reader.List(ctx, &list); err != nil {
		logf.Log.WithName("metrics").Error(err, "list FTPServers for "+ReadyMetric)
		return
	}
	for i := range list.Items {
		s := &list.Items[i]
		v := 0.0
		if meta.IsStatusConditionPresentAndEqual(s.Status.Conditions, ftpv1alpha1.ConditionReady, metav1.ConditionTrue) {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(r.ready, prometheus.GaugeValue, v, s.Namespace, s.Name)
	}
}
