// Command pause is the pod sandbox process for containerd nodes without a registry: it holds
// the pod's namespaces by doing nothing until the runtime stops it with SIGTERM (or SIGINT),
// then exits 0. Unlike the upstream pause it reaps no zombies: our pods do not share a process
// namespace, so every container's own init reaps its children. `make pause-image` builds it
// statically and packs it with `go run ./hack/image -pause`.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
