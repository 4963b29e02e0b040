package controllers

import (
	"context"
	"slices"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
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
			// A map function cannot retry; the cache rarely fails, and the periodic resync
			// catches up. Say so rather than drop the event silently.
			log.FromContext(ctx).Error(err, "cannot map an object to the FTPServers that reference it", "object", client.ObjectKeyFromObject(obj), "index", index)
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, s := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
		}
		return reqs
	}
}

// serversOfClaim maps a claim to the FTPServers that use it: those naming it (claimName) and the
// one whose label it carries. A claim kept on delete (reclaimPolicy Retain) has no owner
// reference, so only the label ties it to its server: its change or deletion must still
// reach that server, which re-creates a deleted claim.
func serversOfClaim(c client.Client) func(context.Context, client.Object) []reconcile.Request {
	referencing := serversReferencing(c, indexClaimNames)
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		reqs := referencing(ctx, obj)
		if server := obj.GetLabels()[labelServer]; server != "" {
			req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: server}}
			if !slices.Contains(reqs, req) {
				reqs = append(reqs, req)
			}
		}
		return reqs
	}
}
