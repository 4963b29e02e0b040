// Command echo is the real node test's workload: a small HTTP server that tells a client the
// address it came from, records each visit on its volume (so the test sees the pod write to
// its claim as the user it runs as), and checks that the pod reaches the API server through the
// kubernetes Service with its service account.
//
// With the argument "id" it prints its user and groups and exits (for kubectl exec).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "id" {
		fmt.Println(identity())
		return
	}
	listen := flag.String("listen", ":8080", "address to serve on")
	data := flag.String("data", "/data", "directory where visits are recorded")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := appendVisit(filepath.Join(*data, "visits.log"), host); err != nil {
			http.Error(w, "record visit: "+err.Error(), http.StatusInternalServerError)
			return
		}
		log.Printf("visit from %s", host)
		pod, _ := os.Hostname() // the pod's name: which replica answered
		fmt.Fprintf(w, "remote=%s pod=%s %s\n", host, pod, identity())
	})
	mux.HandleFunc("/apiserver", func(w http.ResponseWriter, r *http.Request) {
		version, err := apiServerVersion(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprint(w, version)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("serving on %s as %s", *listen, identity())
	log.Fatal(srv.ListenAndServe())
}

func identity() string {
	groups, _ := os.Getgroups()
	return fmt.Sprintf("uid=%d gid=%d groups=%v", os.Getuid(), os.Getgid(), groups)
}

func appendVisit(path, host string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, host); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// apiServerVersion asks the API server for /version the way in-cluster clients do: the
// kubernetes Service's address from the environment, the service account's CA and token.
func apiServerVersion(ctx context.Context) (string, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return "", fmt.Errorf("KUBERNETES_SERVICE_HOST/PORT not set")
	}
	ca, err := os.ReadFile(filepath.Join(serviceAccountDir, "ca.crt"))
	if err != nil {
		return "", err
	}
	token, err := os.ReadFile(filepath.Join(serviceAccountDir, "token"))
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return "", fmt.Errorf("no certificate in the service account's ca.crt")
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+net.JoinHostPort(host, port)+"/version", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /version: %s: %s", resp.Status, body)
	}
	return string(body), nil
}
