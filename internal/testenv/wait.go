package testenv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/poll"
)

// WaitFTPServer polls an FTPServer until its Ready condition, for the current generation, passes
// ok. The error names what was awaited and the last condition seen. Every test cluster (the
// harness, the real node) waits through this one helper.
func WaitFTPServer(ctx context.Context, c client.Reader, namespace, name string, timeout time.Duration, what string, ok func(*metav1.Condition) bool) (*ftpv1alpha1.FTPServer, error) {
	var s ftpv1alpha1.FTPServer
	err := poll.Until(ctx, timeout, 200*time.Millisecond, what, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &s); err != nil {
			return false, err
		}
		if s.Status.ObservedGeneration != s.Generation {
			return false, fmt.Errorf("status of generation %d, spec at %d", s.Status.ObservedGeneration, s.Generation)
		}
		cond := meta.FindStatusCondition(s.Status.Conditions, ftpv1alpha1.ConditionReady)
		if cond == nil {
			return false, errors.New("no Ready condition yet")
		}
		if ok(cond) {
			return true, nil
		}
		return false, fmt.Errorf("%s/%s: %s", cond.Status, cond.Reason, cond.Message)
	})
	if err != nil {
		return nil, fmt.Errorf("FTPServer %s/%s: %w", namespace, name, err)
	}
	return &s, nil
}

// IsReady and HasReason are the usual conditions for WaitFTPServer.
func IsReady(c *metav1.Condition) bool { return c.Status == metav1.ConditionTrue }

// HasReason is true for a Ready condition with reason.
func HasReason(reason string) func(*metav1.Condition) bool {
	return func(c *metav1.Condition) bool { return c.Reason == reason }
}
