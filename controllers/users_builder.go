package controllers

import (
	"fmt"
	"path"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// defaultAnonymousSubPath is the anonymous tree inside its volume when spec.anonymous.subPath
// is empty.
const defaultAnonymousSubPath = "pub"

// userHome is where a user lives, relative to the daemon's data root: <volume>/<subPath>, with
// the first volume and the user's name as defaults.
func userHome(s *ftpv1alpha1.FTPServer, u ftpv1alpha1.FTPUser) string {
	volume := u.Home.Volume
	if volume == "" {
		volume = s.Spec.Volumes[0].Name
	}
	sub := u.Home.SubPath
	if sub == "" {
		sub = u.Name
	}
	return path.Join(volume, sub)
}

func anonymousHome(s *ftpv1alpha1.FTPServer) string {
	a := s.Spec.Anonymous
	volume := a.Volume
	if volume == "" {
		volume = s.Spec.Volumes[0].Name
	}
	sub := a.SubPath
	if sub == "" {
		sub = defaultAnonymousSubPath
	}
	return path.Join(volume, sub)
}

// usersFileFor renders users.yaml from the resolved users (bcrypt hashes only).
func usersFileFor(s *ftpv1alpha1.FTPServer, users []resolvedUser) *fileconfig.UsersFile {
	quotas := map[string]*fileconfig.Quota{}
	for _, u := range s.Spec.Users {
		quotas[u.Name] = quotaFor(u.Quota)
	}
	f := &fileconfig.UsersFile{}
	for _, u := range users {
		f.Users = append(f.Users, fileconfig.User{Name: u.name, PasswordHash: u.passwordHash, Home: u.home, ReadOnly: u.readOnly, Quota: quotas[u.name]})
	}
	if a := s.Spec.Anonymous; a != nil && a.Enabled {
		f.Anonymous = &fileconfig.Anonymous{Enabled: true, Home: anonymousHome(s)}
	}
	return f
}

// quotaFor renders a user's quota in bytes; nil when it sets no limit. The sizes were checked by
// the API server (ByteSize: a quantity between 1 byte and 1Ei), so they parse and fit in int64.
func quotaFor(q *ftpv1alpha1.UserQuota) *fileconfig.Quota {
	if q == nil {
		return nil
	}
	out := fileconfig.Quota{MaxBytes: byteSize(q.MaxBytes), MaxFileSize: byteSize(q.MaxFileSize)}
	if q.MaxFiles != nil {
		out.MaxFiles = *q.MaxFiles
	}
	if out == (fileconfig.Quota{}) {
		return nil
	}
	return &out
}

// byteSize is the number of bytes of a size, rounded up to a whole byte; 0 when unset.
func byteSize(s ftpv1alpha1.ByteSize) int64 {
	if s == "" {
		return 0
	}
	q, err := resource.ParseQuantity(string(s))
	if err != nil {
		return 0 // cannot pass the API server's validation
	}
	return q.Value()
}

// usersSecretFor is the owned Secret holding users.yaml. It is a Secret, not a ConfigMap, because
// even bcrypt hashes should not be world-readable in the namespace.
func usersSecretFor(s *ftpv1alpha1.FTPServer, users []resolvedUser) (*corev1.Secret, error) {
	data, err := fileconfig.Marshal(usersFileFor(s, users))
	if err != nil {
		return nil, fmt.Errorf("render %s for %s/%s: %w", fileconfig.UsersFileName, s.Namespace, s.Name, err)
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: objectMeta(s, usersSecretName(s)),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{fileconfig.UsersFileName: data},
	}, nil
}
