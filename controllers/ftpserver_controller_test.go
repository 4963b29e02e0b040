package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/bcrypt"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
	"github.com/kubeftp/ftp-operator/internal/poll"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

var (
	env        *testenv.Env
	skipReason string
	nsCounter  atomic.Int32
	// daemons answers the readiness handshake for the stand-in pods of markDeploymentAvailable.
	daemons *testenv.InstantDaemons
)

func TestMain(m *testing.M) {
	// The reconciler's errors (retried, so invisible in a test's outcome) are logged with
	// FTPOP_TEST_LOG=1.
	if os.Getenv("FTPOP_TEST_LOG") == "1" {
		ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
	testenv.Main(m, &env, &skipReason)
}

const testImage = "example.invalid/ftp-operator:test"

// startManager runs the operator's manager (NewManager, as `ftp-operator manager` wires it)
// against the test API server until the test ends; adjust changes its options first.
func startManager(t *testing.T, adjust ...func(*ManagerOptions)) {
	t.Helper()
	if env == nil {
		t.Skip(skipReason)
	}
	daemons = &testenv.InstantDaemons{Client: env.Client}
	o := ManagerOptions{
		Scheme: env.Scheme, DaemonImage: testImage, BcryptCost: bcrypt.MinCost, ConfigProber: daemons,
		// Each test starts its own manager with the same controller name.
		SkipNameValidation: true,
	}
	for _, a := range adjust {
		a(&o)
	}
	mgr, err := NewManager(env.Config, o)
	if err != nil {
		t.Fatal(err)
	}
	stop := testenv.RunManager(mgr, nil)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("manager stopped with error: %v", err)
		}
		deleteTestServices(t)
	})
}

// deleteTestServices removes the Services the tests' FTPServers got, once no manager runs to
// re-create them. envtest runs neither the namespace controller nor the garbage collector, and
// left-over Services keep their randomly allocated node ports, which can take the fixed ports a
// later test asks for.
func deleteTestServices(t *testing.T) {
	t.Helper()
	var svcs corev1.ServiceList
	if err := env.Client.List(context.Background(), &svcs); err != nil {
		t.Errorf("list Services to clean up: %v", err)
		return
	}
	for i := range svcs.Items {
		if svcs.Items[i].Namespace != "default" {
			if err := env.Client.Delete(context.Background(), &svcs.Items[i]); client.IgnoreNotFound(err) != nil {
				t.Errorf("delete Service %s/%s: %v", svcs.Items[i].Namespace, svcs.Items[i].Name, err)
			}
		}
	}
}

// newNamespace gives each test its own namespace.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%d", time.Now().UnixNano()%100000, nsCounter.Add(1))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return name
}

func createSecret(t *testing.T, ns, name string, data map[string]string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
	if err := env.Client.Create(context.Background(), s); err != nil {
		t.Fatalf("create Secret %s: %v", name, err)
	}
	return s
}

func newFTPServer(ns, name string) *ftpv1alpha1.FTPServer {
	return &ftpv1alpha1.FTPServer{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: ftpv1alpha1.FTPServerSpec{
			Volumes: []ftpv1alpha1.FTPVolume{
				{Name: "data", ClaimTemplate: &ftpv1alpha1.ClaimTemplate{Size: resource.MustParse("1Gi")}},
				{Name: "scratch", ClaimTemplate: &ftpv1alpha1.ClaimTemplate{Size: resource.MustParse("1Gi"), ReclaimPolicy: ftpv1alpha1.ReclaimDelete}},
			},
			Users: []ftpv1alpha1.FTPUser{{Name: "alice", PasswordSecretRef: ftpv1alpha1.SecretKeyRef{Name: "alice-ftp"}}},
		},
	}
}

func get[T client.Object](t *testing.T, ns, name string, obj T) T {
	t.Helper()
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatalf("get %T %s/%s: %v", obj, ns, name, err)
	}
	return obj
}

// exists reads an object into obj: false only when the API server answers NotFound; any other
// failure is returned as an error, never taken for an absent object.
func exists(ns, name string, obj client.Object) (bool, error) {
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("get %T %s/%s: %w", obj, ns, name, err)
	}
	return true, nil
}

// gone is true only when the API server answers NotFound, so a deletion test cannot pass on a
// failed read.
func gone(ns, name string, obj client.Object) (bool, error) {
	ok, err := exists(ns, name, obj)
	return !ok && err == nil, err
}

func readyCondition(t *testing.T, ns, name string) *metav1.Condition {
	t.Helper()
	s := get(t, ns, name, &ftpv1alpha1.FTPServer{})
	if s.Status.ObservedGeneration != s.Generation {
		return nil
	}
	return meta.FindStatusCondition(s.Status.Conditions, ftpv1alpha1.ConditionReady)
}

func waitForReason(t *testing.T, ns, name, reason string) *metav1.Condition {
	t.Helper()
	var c *metav1.Condition
	poll.Eventually(t, 20*time.Second, "Ready reason "+reason, func() (bool, error) {
		c = readyCondition(t, ns, name)
		return c != nil && c.Reason == reason, fmt.Errorf("ready condition: %+v", c)
	})
	return c
}

// patchServer changes an FTPServer's spec with a merge patch, as kubectl would, so it does not
// conflict with the reconciler's status writes.
func patchServer(t *testing.T, ns, name string, change func(*ftpv1alpha1.FTPServer)) {
	t.Helper()
	s := get(t, ns, name, &ftpv1alpha1.FTPServer{})
	patch := client.MergeFrom(s.DeepCopy())
	change(s)
	if err := env.Client.Patch(context.Background(), s, patch); err != nil {
		t.Fatalf("patch FTPServer %s/%s: %v", ns, name, err)
	}
}

// setLoadBalancerIP plays the cloud's load balancer controller.
func setLoadBalancerIP(t *testing.T, ns, name, ip string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc := get(t, ns, name, &corev1.Service{})
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		return env.Client.Status().Update(context.Background(), svc)
	})
	if err != nil {
		t.Fatalf("set load balancer status: %v", err)
	}
}

// markDeploymentAvailable plays the kubelet and the Deployment controller.
func markDeploymentAvailable(t *testing.T, ns, name string) {
	t.Helper()
	if err := testenv.MarkDeploymentAvailable(context.Background(), env.Client, ns, name); err != nil {
		t.Fatal(err)
	}
}

func configData(t *testing.T, ns, name string) *fileconfig.Config {
	t.Helper()
	cm := get(t, ns, name+"-config", &corev1.ConfigMap{})
	cfg, err := fileconfig.Parse([]byte(cm.Data[fileconfig.ConfigFileName]))
	if err != nil {
		t.Fatalf("the rendered config does not parse: %v", err)
	}
	return cfg
}

func usersFile(t *testing.T, ns, name string) *fileconfig.UsersFile {
	t.Helper()
	s := get(t, ns, name+"-users", &corev1.Secret{})
	f, err := fileconfig.ParseUsers(s.Data[fileconfig.UsersFileName])
	if err != nil {
		t.Fatalf("the rendered users file does not parse: %v", err)
	}
	return f
}

// TestGoneOnlyOnNotFound: the deletion tests wait for gone, which must not take a failed read
// for an absent object (a helper that did passed them without any deletion).
func TestGoneOnlyOnNotFound(t *testing.T) {
	if env == nil {
		t.Skip(skipReason)
	}
	ns := newNamespace(t)
	if absent, err := gone(ns, "nothing", &corev1.ConfigMap{}); !absent || err != nil {
		t.Fatalf("a ConfigMap that does not exist: gone=%v err=%v, want true and no error", absent, err)
	}
	// A kind no API server serves: the read fails, and that says nothing about the object.
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(schema.GroupVersionKind{Group: "example.invalid", Version: "v1", Kind: "Nothing"})
	if absent, err := gone(ns, "nothing", u); absent || err == nil {
		t.Fatalf("a failed read: gone=%v err=%v, want false and the error", absent, err)
	}
}

func TestCreateBuildsOwnedObjectsAndBecomesReady(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	createSecret(t, ns, "alice-ftp", map[string]string{"password": "wonderland"})
	server := newFTPServer(ns, "files")
	if err := env.Client.Create(ctx, server); err != nil {
		t.Fatal(err)
	}

	// Everything appears, owned by the FTPServer (except the retained claim): first what does
	// not depend on the Service's address.
	owned := []client.Object{&corev1.Service{}, &corev1.Secret{}, &networkingv1.NetworkPolicy{}, &corev1.PersistentVolumeClaim{}, &corev1.ConfigMap{}, &appsv1.Deployment{}}
	names := []string{"files", "files-users", "files", "files-scratch", "files-config", "files"}
	for i, obj := range owned {
		if i == 4 {
			// The config and the Deployment wait for the load balancer's address, so that the
			// pods start with the config that carries it.
			waitForReason(t, ns, "files", ftpv1alpha1.ReasonWaitingForAddress)
			for _, o := range []struct {
				name string
				obj  client.Object
			}{{"files-config", &corev1.ConfigMap{}}, {"files", &appsv1.Deployment{}}} {
				if ok, err := exists(ns, o.name, o.obj); ok || err != nil {
					t.Fatalf("%T %s exists before the load balancer has an address (%v)", o.obj, o.name, err)
				}
			}
			setLoadBalancerIP(t, ns, "files", "203.0.113.7")
		}
		poll.Eventually(t, 20*time.Second, fmt.Sprintf("%T %s", obj, names[i]), func() (bool, error) { return exists(ns, names[i], obj) })
		refs := obj.GetOwnerReferences()
		if len(refs) != 1 || refs[0].Name != "files" || refs[0].Kind != "FTPServer" || !ptr.Deref(refs[0].Controller, false) {
			t.Errorf("%T %s: owner references %+v, want the FTPServer as controller", obj, names[i], refs)
		}
	}
	retained := &corev1.PersistentVolumeClaim{}
	poll.Eventually(t, 10*time.Second, "retained claim", func() (bool, error) { return exists(ns, "files-data", retained) })
	if len(retained.OwnerReferences) != 0 {
		t.Errorf("claim with reclaimPolicy Retain has owner references %+v; garbage collection would delete the data", retained.OwnerReferences)
	}
	if retained.Labels[labelServer] != "files" {
		t.Errorf("retained claim is not labelled with its server: %v", retained.Labels)
	}

	// The users Secret has a bcrypt hash of the password, never the password.
	users := usersFile(t, ns, "files")
	if len(users.Users) != 1 || bcrypt.CompareHashAndPassword([]byte(users.Users[0].PasswordHash), []byte("wonderland")) != nil {
		t.Fatalf("users file does not hold a bcrypt hash of alice's password: %+v", users)
	}
	if raw := get(t, ns, "files-users", &corev1.Secret{}); strings.Contains(string(raw.Data[fileconfig.UsersFileName]), "wonderland") {
		t.Fatal("the plain password reached the daemon's users Secret")
	}

	// The config is created with the address.
	if got := configData(t, ns, "files").Passive.Address.Static; got != "203.0.113.7" {
		t.Fatalf("the ConfigMap's PASV address is %q, want the load balancer's 203.0.113.7", got)
	}
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonWaitingForPods)
	template := get(t, ns, "files", &appsv1.Deployment{}).Spec.Template
	setLoadBalancerIP(t, ns, "files", "203.0.113.17")
	poll.Eventually(t, 20*time.Second, "the new PASV address in the ConfigMap", func() (bool, error) {
		return configData(t, ns, "files").Passive.Address.Static == "203.0.113.17", nil
	})
	if now := get(t, ns, "files", &appsv1.Deployment{}).Spec.Template; !equality.Semantic.DeepEqual(template, now) {
		t.Fatal("the pod template changed when only the PASV address did: that would roll the pods and drop sessions")
	}
	setLoadBalancerIP(t, ns, "files", "203.0.113.7")
	poll.Eventually(t, 20*time.Second, "the PASV address back in the ConfigMap", func() (bool, error) {
		return configData(t, ns, "files").Passive.Address.Static == "203.0.113.7", nil
	})

	markDeploymentAvailable(t, ns, "files")
	ready := waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady)
	if ready.Status != metav1.ConditionTrue {
		t.Fatalf("Ready = %+v", ready)
	}
	s := get(t, ns, "files", &ftpv1alpha1.FTPServer{})
	if s.Status.Endpoint != "ftp://203.0.113.7:21" || s.Status.PassiveAddress != "203.0.113.7" || s.Status.PassivePorts != "30000-30019" || s.Status.ReadyReplicas != 1 {
		t.Fatalf("status fields: %+v", s.Status)
	}
	if c := meta.FindStatusCondition(s.Status.Conditions, ftpv1alpha1.ConditionReconciling); c != nil {
		t.Fatalf("Reconciling still present when ready: %+v", c)
	}
}

// readyServer creates an FTPServer and drives it to Ready.
func readyServer(t *testing.T, ns, name string) {
	t.Helper()
	createSecret(t, ns, "alice-ftp", map[string]string{"password": "wonderland"})
	if err := env.Client.Create(context.Background(), newFTPServer(ns, name)); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 20*time.Second, "Service", func() (bool, error) { return exists(ns, name, &corev1.Service{}) })
	setLoadBalancerIP(t, ns, name, "203.0.113.8")
	waitForReason(t, ns, name, ftpv1alpha1.ReasonWaitingForPods)
	markDeploymentAvailable(t, ns, name)
	waitForReason(t, ns, name, ftpv1alpha1.ReasonReady)
}

func TestPasswordChangeUpdatesUsersWithoutRollout(t *testing.T) {
	startManager(t)
	ns := newNamespace(t)
	readyServer(t, ns, "files")
	before := get(t, ns, "files", &appsv1.Deployment{})

	secret := get(t, ns, "alice-ftp", &corev1.Secret{})
	secret.Data["password"] = []byte("looking-glass")
	if err := env.Client.Update(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 20*time.Second, "the new password in the users Secret", func() (bool, error) {
		u := usersFile(t, ns, "files").Users[0]
		return bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte("looking-glass")) == nil, nil
	})
	after := get(t, ns, "files", &appsv1.Deployment{})
	if after.Generation != before.Generation || !equality.Semantic.DeepEqual(before.Spec.Template, after.Spec.Template) {
		t.Fatal("a password change rolled the Deployment; the daemon reloads users without a restart")
	}
}

func TestMissingSecretIsReportedAndKeepsTheServerRunning(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	readyServer(t, ns, "files")
	usersBefore := get(t, ns, "files-users", &corev1.Secret{}).ResourceVersion

	if err := env.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "alice-ftp", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	c := waitForReason(t, ns, "files", ftpv1alpha1.ReasonSecretNotFound)
	if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, `Secret "alice-ftp"`) || !strings.Contains(c.Message, "kubectl") {
		t.Fatalf("Ready = %+v; want False with a message naming the Secret and how to create it", c)
	}
	s := get(t, ns, "files", &ftpv1alpha1.FTPServer{})
	if !meta.IsStatusConditionTrue(s.Status.Conditions, ftpv1alpha1.ConditionStalled) {
		t.Fatalf("Stalled not True for a missing Secret: %+v", s.Status.Conditions)
	}
	poll.Eventually(t, 10*time.Second, "a Warning event for SecretNotFound", func() (bool, error) {
		var list eventsv1.EventList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.Reason == ftpv1alpha1.ReasonSecretNotFound && e.Type == corev1.EventTypeWarning && e.Regarding.Name == "files" {
				return true, nil
			}
		}
		return false, fmt.Errorf("%d events, none for SecretNotFound", len(list.Items))
	})
	if get(t, ns, "files-users", &corev1.Secret{}).ResourceVersion != usersBefore {
		t.Fatal("the users Secret was rewritten although its input is missing; running users must stay")
	}

	// Creating the Secret again heals it without any other action.
	createSecret(t, ns, "alice-ftp", map[string]string{"password": "back"})
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady)
}

func TestOthersFieldsSurviveAndSteadyStateWritesNothing(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	readyServer(t, ns, "files")

	// Someone else (a user, another controller) annotates our objects.
	svc := get(t, ns, "files", &corev1.Service{})
	patch := client.MergeFrom(svc.DeepCopy())
	svc.Annotations = map[string]string{"example.com/owner": "netops"}
	svc.Labels["example.com/cost-center"] = "42"
	if err := env.Client.Patch(ctx, svc, patch); err != nil {
		t.Fatal(err)
	}
	dep := get(t, ns, "files", &appsv1.Deployment{})
	patch = client.MergeFrom(dep.DeepCopy())
	dep.Annotations = map[string]string{"example.com/audited": "yes"}
	if err := env.Client.Patch(ctx, dep, patch); err != nil {
		t.Fatal(err)
	}

	// A spec change makes the reconciler rewrite its objects.
	patchServer(t, ns, "files", func(s *ftpv1alpha1.FTPServer) { s.Spec.Limits.MaxSessions = 150 })
	poll.Eventually(t, 20*time.Second, "new limit in the config and a rollout for it", func() (bool, error) {
		dep := get(t, ns, "files", &appsv1.Deployment{})
		return configData(t, ns, "files").Limits.MaxSessions == 150 && dep.Generation > 1, nil
	})
	svc = get(t, ns, "files", &corev1.Service{})
	dep = get(t, ns, "files", &appsv1.Deployment{})
	if svc.Annotations["example.com/owner"] != "netops" || svc.Labels["example.com/cost-center"] != "42" || dep.Annotations["example.com/audited"] != "yes" {
		t.Fatalf("fields set by others were removed: service %v %v, deployment %v", svc.Annotations, svc.Labels, dep.Annotations)
	}
	markDeploymentAvailable(t, ns, "files") // the limit is restart-relevant: the rollout "completes"
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonReady)

	// Steady state: trigger several reconciles and count writes through resourceVersions.
	versions := func() map[string]string {
		out := map[string]string{}
		for _, o := range []struct {
			name string
			obj  client.Object
		}{
			{"files", &ftpv1alpha1.FTPServer{}}, {"files", &appsv1.Deployment{}}, {"files", &corev1.Service{}},
			{"files-config", &corev1.ConfigMap{}}, {"files-users", &corev1.Secret{}}, {"files", &networkingv1.NetworkPolicy{}},
			{"files-data", &corev1.PersistentVolumeClaim{}}, {"files-scratch", &corev1.PersistentVolumeClaim{}},
		} {
			obj := get(t, ns, o.name, o.obj)
			out[fmt.Sprintf("%T/%s", obj, o.name)] = obj.GetResourceVersion()
		}
		return out
	}
	time.Sleep(time.Second) // let in-flight reconciles settle
	before := versions()
	for i := 0; i < 5; i++ {
		// Labelling the password Secret triggers a reconcile through the field index.
		secret := get(t, ns, "alice-ftp", &corev1.Secret{})
		p := client.MergeFrom(secret.DeepCopy())
		if secret.Labels == nil {
			secret.Labels = map[string]string{}
		}
		secret.Labels["touch"] = fmt.Sprint(i)
		if err := env.Client.Patch(ctx, secret, p); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(time.Second)
	after := versions()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s was written in steady state: resourceVersion %s -> %s", k, v, after[k])
		}
	}
}

func TestDeletionKeepsRetainedClaims(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	readyServer(t, ns, "files")
	if err := env.Client.Delete(ctx, &ftpv1alpha1.FTPServer{ObjectMeta: metav1.ObjectMeta{Name: "files", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 10*time.Second, "FTPServer gone", func() (bool, error) { return gone(ns, "files", &ftpv1alpha1.FTPServer{}) })
	// envtest runs no garbage collector, so ownership is what decides: the retained claim has no
	// owner reference and stays; the one with reclaimPolicy Delete is owned and would be collected.
	claim := get(t, ns, "files-data", &corev1.PersistentVolumeClaim{})
	if len(claim.OwnerReferences) != 0 || !claim.DeletionTimestamp.IsZero() {
		t.Fatalf("retained claim is owned or being deleted: %+v", claim.ObjectMeta)
	}
	scratch := get(t, ns, "files-scratch", &corev1.PersistentVolumeClaim{})
	if len(scratch.OwnerReferences) != 1 {
		t.Fatalf("claim with reclaimPolicy Delete is not owned by the FTPServer: %+v", scratch.OwnerReferences)
	}
}

func TestNetworkPolicyCanBeDisabled(t *testing.T) {
	startManager(t)
	ns := newNamespace(t)
	readyServer(t, ns, "files")
	patchServer(t, ns, "files", func(s *ftpv1alpha1.FTPServer) { s.Spec.NetworkPolicy.Enabled = ptr.To(false) })
	poll.Eventually(t, 20*time.Second, "NetworkPolicy removed", func() (bool, error) { return gone(ns, "files", &networkingv1.NetworkPolicy{}) })
}

func TestNodePortClashIsReportedAsPortConflict(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	other := newNamespace(t)

	// Someone else's Service holds five node ports. The API server keeps deleted Services' node
	// ports allocated for a while, so pick a free range by trying, not a fixed one.
	var start int32
	for attempt := 0; ; attempt++ {
		start = int32(30100 + rand.IntN(2500))
		holder := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "holder", Namespace: other},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "other"}},
		}
		for p := start; p <= start+4; p++ {
			holder.Spec.Ports = append(holder.Spec.Ports, corev1.ServicePort{Name: fmt.Sprint("p", p), Port: p, NodePort: p})
		}
		err := env.Client.Create(ctx, holder)
		if err == nil {
			break
		}
		if attempt == 10 {
			t.Fatalf("could not find five free node ports: %v", err)
		}
	}

	ns := newNamespace(t)
	createSecret(t, ns, "alice-ftp", map[string]string{"password": "x"})
	s := newFTPServer(ns, "scanners")
	s.Spec.Service.Type = corev1.ServiceTypeNodePort
	s.Spec.PassiveAddress.Address = "198.51.100.10"
	s.Spec.Ports.Passive = ftpv1alpha1.PassivePortRange{Start: start, End: start + 4}
	if err := env.Client.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	c := waitForReason(t, ns, "scanners", ftpv1alpha1.ReasonPortConflict)
	if !strings.Contains(c.Message, "already allocated") || !strings.Contains(c.Message, "choose other ports.passive") {
		t.Fatalf("PortConflict message does not say what clashed and what to do: %s", c.Message)
	}
	if got := get(t, ns, "scanners", &ftpv1alpha1.FTPServer{}); !meta.IsStatusConditionTrue(got.Status.Conditions, ftpv1alpha1.ConditionStalled) {
		t.Fatalf("a port conflict must be Stalled (it needs a person): %+v", got.Status.Conditions)
	}
}

// TestForeignObjectsAreNeverTakenOver: objects that merely carry a name the operator would use
// are left alone and reported, so their data never becomes ours to garbage-collect.
func TestForeignObjectsAreNeverTakenOver(t *testing.T) {
	startManager(t)
	ctx := context.Background()

	t.Run("a user's Secret named like our users Secret", func(t *testing.T) {
		ns := newNamespace(t)
		createSecret(t, ns, "b-users", map[string]string{"password": "x"})
		s := newFTPServer(ns, "b")
		s.Spec.Users[0].PasswordSecretRef.Name = "b-users"
		if err := env.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		c := waitForReason(t, ns, "b", ftpv1alpha1.ReasonNameConflict)
		if !strings.Contains(c.Message, "b-users") {
			t.Fatalf("message does not name the object: %s", c.Message)
		}
		secret := get(t, ns, "b-users", &corev1.Secret{})
		if len(secret.OwnerReferences) != 0 || len(secret.Data) != 1 {
			t.Fatalf("the user's Secret was taken over: owners %v, keys %d", secret.OwnerReferences, len(secret.Data))
		}
		if absent, err := gone(ns, "b", &appsv1.Deployment{}); !absent {
			t.Fatalf("a Deployment was created although its users Secret is not ours (or could not be read: %v)", err)
		}
	})

	t.Run("two servers whose claim names collide", func(t *testing.T) {
		ns := newNamespace(t)
		createSecret(t, ns, "alice-ftp", map[string]string{"password": "x"})
		first := newFTPServer(ns, "a")
		first.Spec.Volumes = []ftpv1alpha1.FTPVolume{{Name: "b-data", ClaimTemplate: &ftpv1alpha1.ClaimTemplate{Size: resource.MustParse("1Gi"), ReclaimPolicy: ftpv1alpha1.ReclaimDelete}}}
		if err := env.Client.Create(ctx, first); err != nil {
			t.Fatal(err)
		}
		poll.Eventually(t, 20*time.Second, "claim a-b-data", func() (bool, error) { return exists(ns, "a-b-data", &corev1.PersistentVolumeClaim{}) })
		second := newFTPServer(ns, "a-b")
		second.Spec.Volumes = []ftpv1alpha1.FTPVolume{{Name: "data", ClaimTemplate: &ftpv1alpha1.ClaimTemplate{Size: resource.MustParse("2Gi")}}}
		if err := env.Client.Create(ctx, second); err != nil {
			t.Fatal(err)
		}
		waitForReason(t, ns, "a-b", ftpv1alpha1.ReasonNameConflict)
		claim := get(t, ns, "a-b-data", &corev1.PersistentVolumeClaim{})
		if claim.Labels[labelServer] != "a" || claim.Spec.Resources.Requests.Storage().String() != "1Gi" {
			t.Fatalf("the first server's claim was changed by the second: labels %v, size %s", claim.Labels, claim.Spec.Resources.Requests.Storage())
		}
	})
}

// TestRefusedClaimChangeDoesNotBlockTheRest: a claimTemplate change the existing claim cannot
// take is reported, and the rest of the spec still goes out; the rollout strategy follows the
// claims as they are (ReadWriteOnce: Recreate), not the refused template (ReadWriteMany would
// surge a second pod that may land on another node and hang on the volume).
func TestRefusedClaimChangeDoesNotBlockTheRest(t *testing.T) {
	startManager(t)
	ns := newNamespace(t)
	readyServer(t, ns, "files")
	patchServer(t, ns, "files", func(s *ftpv1alpha1.FTPServer) {
		for i := range s.Spec.Volumes {
			s.Spec.Volumes[i].ClaimTemplate.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
		}
		s.Spec.Ports.Control = 2100
	})
	c := waitForReason(t, ns, "files", ftpv1alpha1.ReasonClaimUpdateRejected)
	if !strings.Contains(c.Message, "files-data") {
		t.Fatalf("message does not name the claim: %s", c.Message)
	}
	poll.Eventually(t, 20*time.Second, "the new control port on the Service", func() (bool, error) {
		svc := get(t, ns, "files", &corev1.Service{})
		return svc.Spec.Ports[0].Port == 2100, fmt.Errorf("port %d", svc.Spec.Ports[0].Port)
	})
	// The Deployment is applied after the Service in the same pass: watch it for a while.
	poll.Consistently(t, 2*time.Second, "the Recreate strategy of ReadWriteOnce claims", func() error {
		if st := get(t, ns, "files", &appsv1.Deployment{}).Spec.Strategy.Type; st != appsv1.RecreateDeploymentStrategyType {
			return fmt.Errorf("strategy %s after a refused change to ReadWriteMany; the claims are still ReadWriteOnce", st)
		}
		return nil
	})
}

// TestDeletedRetainedClaimIsRecreated: a claim kept on delete has no owner reference, yet its
// deletion reaches its server (watched through the server label), which re-creates it.
func TestDeletedRetainedClaimIsRecreated(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	readyServer(t, ns, "files")
	claim := get(t, ns, "files-data", &corev1.PersistentVolumeClaim{})
	if len(claim.OwnerReferences) != 0 {
		t.Fatalf("retained claim has owner references %+v", claim.OwnerReferences)
	}
	if err := env.Client.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	// The pvc-protection finalizer goes once no pod uses the claim; no controller-manager runs
	// here, so the test removes it as that controller would.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := &corev1.PersistentVolumeClaim{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(claim), c); err != nil {
			return client.IgnoreNotFound(err)
		}
		c.Finalizers = nil
		return env.Client.Update(ctx, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 10*time.Second, "the retained claim re-created", func() (bool, error) {
		c := &corev1.PersistentVolumeClaim{}
		if ok, err := exists(ns, "files-data", c); !ok {
			return false, err
		}
		return c.UID != claim.UID && c.DeletionTimestamp == nil, fmt.Errorf("claim %s, deleting %v", c.UID, c.DeletionTimestamp)
	})
}

// TestReplicasZeroStopsTheServer: replicas 0 scales the daemon to nothing, keeps the Service and
// the claims, and reports Stopping, then Stopped (Ready True: the state asked for, reached, with
// no Reconciling or Stalled); replicas 1 brings it back.
func TestReplicasZeroStopsTheServer(t *testing.T) {
	startManager(t)
	ctx := context.Background()
	ns := newNamespace(t)
	readyServer(t, ns, "files")
	patchServer(t, ns, "files", func(s *ftpv1alpha1.FTPServer) { s.Spec.Replicas = ptr.To(int32(0)) })
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonStopping)
	if r := get(t, ns, "files", &appsv1.Deployment{}).Spec.Replicas; r == nil || *r != 0 {
		t.Fatalf("Deployment replicas = %v, want 0", r)
	}
	// Play the Deployment controller: the pod is gone.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		dep := get(t, ns, "files", &appsv1.Deployment{})
		dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation}
		return env.Client.Status().Update(ctx, dep)
	})
	if err != nil {
		t.Fatal(err)
	}
	c := waitForReason(t, ns, "files", ftpv1alpha1.ReasonStopped)
	s := get(t, ns, "files", &ftpv1alpha1.FTPServer{})
	if c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "no daemon pod runs") || s.Status.ReadyReplicas != 0 {
		t.Fatalf("stopped server: Ready %+v, readyReplicas %d", c, s.Status.ReadyReplicas)
	}
	for _, cond := range []string{ftpv1alpha1.ConditionReconciling, ftpv1alpha1.ConditionStalled} {
		if meta.FindStatusCondition(s.Status.Conditions, cond) != nil {
			t.Fatalf("%s present on a stopped server", cond)
		}
	}
	for _, kept := range []struct {
		name string
		obj  client.Object
	}{{"files", &corev1.Service{}}, {"files-data", &corev1.PersistentVolumeClaim{}}, {"files-scratch", &corev1.PersistentVolumeClaim{}}} {
		if ok, err := exists(ns, kept.name, kept.obj); !ok {
			t.Fatalf("%T %s gone on a stopped server: %v", kept.obj, kept.name, err)
		}
	}
	patchServer(t, ns, "files", func(s *ftpv1alpha1.FTPServer) { s.Spec.Replicas = ptr.To(int32(1)) })
	waitForReason(t, ns, "files", ftpv1alpha1.ReasonWaitingForPods)
}

// TestEventsNormalForWaitsWarningWhenLong: waiting for the load balancer is a Normal event; the
// same wait past WaitWarningAfter gets one Warning.
func TestEventsNormalForWaitsWarningWhenLong(t *testing.T) {
	startManager(t, func(o *ManagerOptions) { o.WaitWarningAfter = 2 * time.Second })
	ctx := context.Background()
	ns := newNamespace(t)
	createSecret(t, ns, "alice-ftp", map[string]string{"password": "wonderland"})
	if err := env.Client.Create(ctx, newFTPServer(ns, "files")); err != nil {
		t.Fatal(err)
	}
	events := func(eventType string) int {
		var list eventsv1.EventList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range list.Items {
			if e.Reason == ftpv1alpha1.ReasonWaitingForAddress && e.Type == eventType {
				n++
			}
		}
		return n
	}
	poll.Eventually(t, 10*time.Second, "a Normal event for the wait", func() (bool, error) { return events(corev1.EventTypeNormal) == 1, nil })
	if n := events(corev1.EventTypeWarning); n != 0 {
		t.Fatalf("%d Warning events for an expected wait of under 2 s", n)
	}
	poll.Eventually(t, 10*time.Second, "a Warning event once the wait is long", func() (bool, error) { return events(corev1.EventTypeWarning) == 1, nil })
	poll.Consistently(t, 3*time.Second, "one Warning for one long wait", func() error {
		if n := events(corev1.EventTypeWarning); n != 1 {
			return fmt.Errorf("%d Warning events, want 1", n)
		}
		return nil
	})
}
