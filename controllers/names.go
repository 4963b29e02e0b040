package controllers

import (
	"strconv"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// The names of the objects an FTPServer owns. The Service, the Deployment and the
// NetworkPolicy take the FTPServer's own name.

func configMapName(s *ftpv1alpha1.FTPServer) string   { return s.Name + "-config" }
func usersSecretName(s *ftpv1alpha1.FTPServer) string { return s.Name + "-users" }

// claimName is the claim a volume mounts: the existing claim it names, or <server>-<volume> for
// a claim template.
func claimName(s *ftpv1alpha1.FTPServer, v ftpv1alpha1.FTPVolume) string {
	if v.ClaimName != "" {
		return v.ClaimName
	}
	return s.Name + "-" + v.Name
}

// passivePortName names the Service port of one passive port. Port names are at most 15
// characters; "pasv-65535" is 10.
func passivePortName(port int32) string { return "pasv-" + strconv.Itoa(int(port)) }
