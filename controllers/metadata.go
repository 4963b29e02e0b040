package controllers

import (
	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// Label keys on the objects we create.
const (
	labelName      = "app.kubernetes.io/name"
	labelInstance  = "app.kubernetes.io/instance"
	labelComponent = "app.kubernetes.io/component"
	labelManagedBy = "app.kubernetes.io/managed-by"
	// labelServer marks claims created for an FTPServer, including retained ones without an
	// owner reference.
	labelServer = "ftp.kubeftp.dev/server"
	// operatorPodLabel marks the operator's own pods; the daemons' NetworkPolicy admits them to
	// the ops port for the readiness handshake (served_config.go).
	operatorPodLabel = "ftp.kubeftp.dev/operator"
)

// Annotations on the daemon pods.
const (
	// restartChecksumAnnotation on the pod template changes only with config that the daemon
	// cannot reload, so that users and PASV address changes never roll the pods.
	restartChecksumAnnotation = "ftp.kubeftp.dev/restart-checksum"
	// inputsVersionAnnotation on each daemon pod (not the template, so it rolls nothing) is the
	// version of what the pod mounts from us: writing it makes the kubelet refresh the volumes.
	inputsVersionAnnotation = "ftp.kubeftp.dev/inputs-version"
)

// selectorLabels pick the daemon pods of one FTPServer; they never change after creation
// because a Deployment's selector is immutable.
func selectorLabels(s *ftpv1alpha1.FTPServer) map[string]string {
	return map[string]string{labelName: "ftpd", labelInstance: s.Name}
}

// commonLabels go on every object we create.
func commonLabels(s *ftpv1alpha1.FTPServer) map[string]string {
	l := selectorLabels(s)
	l[labelComponent] = "ftp-server"
	l[labelManagedBy] = "ftp-operator"
	return l
}
