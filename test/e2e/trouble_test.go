package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// troubleManifest is an FTPServer with extra spec fields (YAML at the spec's indentation) and
// the volume's claim template fields.
func troubleManifest(c *cluster, name, spec, claim string) string {
	return fmt.Sprintf(`
apiVersion: ftp.kubeftp.dev/v1alpha1
kind: FTPServer
metadata: {name: %s}
spec:
  volumes:
    - name: data
      claimTemplate: {size: 1Gi, reclaimPolicy: Delete%s}
  users:
    - name: ops
      passwordSecretRef: {name: ops-ftp}
  ports: {control: %d, passive: {start: 30400, end: 30404}}
%s`, name, claim, c.control, spec)
}

// TestPodTroubleInStatus: what keeps real pods from serving shows in the FTPServer's status with
// its own reason and a message that says what to do, as the real scheduler, PV controller and
// (stand-in) kubelet report it: an image the node cannot get, a daemon that keeps exiting, a
// pod no node fits, a claim nothing binds. Fixing the image brings the server up.
func TestPodTroubleInStatus(t *testing.T) { eachMode(t, testPodTrouble) }

func testPodTrouble(t *testing.T, c *cluster) {
	ns := c.newNamespace(t, "trouble")
	c.apply(t, ns, "apiVersion: v1\nkind: Secret\nmetadata: {name: ops-ftp}\nstringData: {password: ops}\n")
	c.apply(t, ns, "apiVersion: v1\nkind: Secret\nmetadata: {name: broken-tls}\ntype: kubernetes.io/tls\n"+
		"stringData: {tls.crt: not a certificate, tls.key: not a key}\n")
	tests := []struct {
		name, spec, claim string
		reason            string
		stalled           bool
		says              []string
	}{
		{"image", "  image: example.invalid/ftp-operator:missing\n", "", ftpv1alpha1.ReasonImagePullFailed, true,
			[]string{"example.invalid/ftp-operator:missing", "spec.image"}},
		{"crash", "  tls: {mode: Explicit, secretName: broken-tls}\n", "", ftpv1alpha1.ReasonDaemonCrashLooping, true,
			[]string{"keeps exiting", "last exit code 1", "logs"}},
		{"unschedulable", "  pod: {nodeSelector: {example.invalid/pool: none}}\n", "", ftpv1alpha1.ReasonUnschedulable, false,
			[]string{"cannot be scheduled", "node affinity/selector", "nodeSelector"}},
		{"claim", "", ", storageClassName: no-such-class", ftpv1alpha1.ReasonClaimPending, false,
			[]string{"trouble-claim-data", `StorageClass "no-such-class"`, "describe pvc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "trouble-" + tt.name
			c.apply(t, ns, troubleManifest(c, name, tt.spec, tt.claim))
			s, err := c.h.WaitReason(context.Background(), ns, name, tt.reason, 60*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			ready := meta.FindStatusCondition(s.Status.Conditions, ftpv1alpha1.ConditionReady)
			for _, want := range tt.says {
				if !strings.Contains(ready.Message, want) {
					t.Errorf("message %q does not say %q", ready.Message, want)
				}
			}
			stalled := meta.FindStatusCondition(s.Status.Conditions, ftpv1alpha1.ConditionStalled) != nil
			reconciling := meta.FindStatusCondition(s.Status.Conditions, ftpv1alpha1.ConditionReconciling) != nil
			if stalled != tt.stalled || reconciling == tt.stalled {
				t.Errorf("Stalled present = %v, Reconciling present = %v; want Stalled %v", stalled, reconciling, tt.stalled)
			}
			if tt.name == "image" {
				// The fix: the operator's own image, which the node has.
				c.apply(t, ns, troubleManifest(c, name, "", tt.claim))
				c.waitReady(t, ns, name)
			}
			c.deleteAndWait(t, ns, name)
		})
	}
}
