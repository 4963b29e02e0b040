// Command pause is the real node's sandbox image: the process that holds a pod's namespaces
// while its containers come and go. It does nothing until told to stop.
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
