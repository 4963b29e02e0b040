package main

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestResolveDaemonImage: an explicit image wins; in a pod the manager takes its own container's
// image (what an overlay's image rewrite set), read from the real API server; outside a pod the
// built-in default; a pod that cannot be read is an error, not a silent default.
func TestResolveDaemonImage(t *testing.T) {
	if env == nil {
		t.Skip(skipReason)
	}
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ftp-operator-manager-abc", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "kube-rbac-proxy", Image: "registry.example/proxy:1"},
			{Name: managerContainer, Image: "registry.example/team/ftp-operator:v9"},
		}},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(ctx, pod) })

	cases := []struct {
		name, explicit, podName, podNamespace string
		want, wantErr                         string
	}{
		{"explicit", "registry.example/ftpd:2", pod.Name, pod.Namespace, "registry.example/ftpd:2", ""},
		{"own pod", "", pod.Name, pod.Namespace, "registry.example/team/ftp-operator:v9", ""},
		{"not in a pod", "", "", "", defaultDaemonImage, ""},
		{"own pod missing", "", "gone", pod.Namespace, "", "read the manager's own pod default/gone"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(podNameEnv, tc.podName)
			t.Setenv(podNamespaceEnv, tc.podNamespace)
			got, source, err := resolveDaemonImage(ctx, env.Client, tc.explicit)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || source == "" {
				t.Fatalf("got %q (%s), %v; want %q", got, source, err, tc.want)
			}
		})
	}
}
