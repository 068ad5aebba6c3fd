// Command pause is the sandbox ("pause") image of the test node: it holds
// a pod's namespaces open until it is told to stop. Nothing can be pulled
// on the node, so the image is built from this static binary.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
