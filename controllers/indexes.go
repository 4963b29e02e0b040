package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// Field indexes on FTPServers, so that a change to a Secret or claim finds the FTPServers that
// use it without listing them all.
const (
	indexSecretNames = "spec.referencedSecrets"
	indexClaimNames  = "spec.referencedClaims"
)

// referencedSecrets are the Secrets an FTPServer reads: users' passwords and the TLS Secret.
func referencedSecrets(obj client.Object) []string {
	s := obj.(*ftpv1alpha1.FTPServer)
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, u := range s.Spec.Users {
		add(u.PasswordSecretRef.Name)
	}
	if s.Spec.TLS.Mode != "" && s.Spec.TLS.Mode != ftpv1alpha1.TLSDisabled {
		add(s.Spec.TLS.SecretName)
	}
	return names
}

// referencedClaims are the existing claims an FTPServer mounts.
func referencedClaims(obj client.Object) []string {
	s := obj.(*ftpv1alpha1.FTPServer)
	var names []string
	for _, v := range s.Spec.Volumes {
		if v.ClaimName != "" {
			names = append(names, v.ClaimName)
		}
	}
	return names
}

// serversReferencing maps an object to the FTPServers in its namespace whose index lists it.
func serversReferencing(c client.Client, index string) func(context.Context, client.Object) []reconcile.Request {
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		var list ftpv1alpha1.FTPServerList
		if err := c.List(ctx, &list, client.InNamespace(obj.GetNamespace()), client.MatchingFields{index: obj.GetName()}); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, s := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
		}
		return reqs
	}
}
