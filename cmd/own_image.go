package main

import (
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The daemons run from the manager's own image, so that an operator and its daemons never skew.
// Where the install says nothing else (--daemon-image, FTP_OPERATOR_IMAGE), the manager reads the
// image of its own container from its Pod (POD_NAME and POD_NAMESPACE, from the downward API in
// config/manager). Copying the image into the environment at build time (a kustomize
// replacement) does not work: an overlay's image rewrite runs after its base's replacements, so
// the daemons kept the base's image while the manager ran the overlay's.

// Environment the manager reads its own Pod from.
const (
	podNameEnv      = "POD_NAME"
	podNamespaceEnv = "POD_NAMESPACE"
	// managerContainer is the manager's container name in config/manager and the chart.
	managerContainer = "manager"
)

// ownImage is the image of container in the Pod namespace/name.
func ownImage(ctx context.Context, c client.Reader, namespace, name, container string) (string, error) {
	var pod corev1.Pod
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &pod); err != nil {
		return "", fmt.Errorf("read the manager's own pod %s/%s for its image: %w", namespace, name, err)
	}
	for _, ct := range pod.Spec.Containers {
		if ct.Name == container {
			return ct.Image, nil
		}
	}
	return "", fmt.Errorf("the manager's own pod %s/%s has no container %q", namespace, name, container)
}

// daemonImageSource says where the daemon image comes from: the flag or FTP_OPERATOR_IMAGE
// (explicit), the manager's own pod (POD_NAME set), or the image stamped in at build time.
func resolveDaemonImage(ctx context.Context, c client.Reader, explicit string) (image, source string, err error) {
	if explicit != "" {
		return explicit, "--daemon-image or FTP_OPERATOR_IMAGE", nil
	}
	name, namespace := os.Getenv(podNameEnv), os.Getenv(podNamespaceEnv)
	if name == "" || namespace == "" {
		return defaultDaemonImage, "built-in default (not running in a pod with POD_NAME and POD_NAMESPACE)", nil
	}
	image, err = ownImage(ctx, c, namespace, name, managerContainer)
	if err != nil {
		return "", "", err
	}
	return image, "the manager's own container", nil
}
