package testenv

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// WaitFTPServer polls an FTPServer until its Ready condition, for the current generation, passes
// ok. The error names what was awaited and the last condition seen. Every test cluster (the
// harness, the real node) waits through this one helper.
func WaitFTPServer(ctx context.Context, c client.Reader, namespace, name string, timeout time.Duration, what string, ok func(*metav1.Condition) bool) (*ftpv1alpha1.FTPServer, error) {
	deadline := time.Now().Add(timeout)
	last := "no status yet"
	for {
		var s ftpv1alpha1.FTPServer
		err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &s)
		switch {
		case err != nil:
			last = err.Error()
		case s.Status.ObservedGeneration != s.Generation:
			last = fmt.Sprintf("status of generation %d, spec at %d", s.Status.ObservedGeneration, s.Generation)
		default:
			if cond := meta.FindStatusCondition(s.Status.Conditions, ftpv1alpha1.ConditionReady); cond != nil {
				if ok(cond) {
					return &s, nil
				}
				last = fmt.Sprintf("%s/%s: %s", cond.Status, cond.Reason, cond.Message)
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("FTPServer %s/%s: no %s after %s (last: %s)", namespace, name, what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// IsReady and HasReason are the usual conditions for WaitFTPServer.
func IsReady(c *metav1.Condition) bool { return c.Status == metav1.ConditionTrue }

// HasReason is true for a Ready condition with reason.
func HasReason(reason string) func(*metav1.Condition) bool {
	return func(c *metav1.Condition) bool { return c.Reason == reason }
}
