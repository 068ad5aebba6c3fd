package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

func main() { os.Exit(dispatch(os.Args, os.Stderr)) }

// dispatch runs the role argv[0] names or, when the binary is invoked
// as csi-standin, the role its first argument names.
func dispatch(argv []string, stderr io.Writer) int {
	name, args := filepath.Base(argv[0]), argv[1:]
	if name == "csi-standin" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	// A role's name is its image's entrypoint.
	switch name {
	case "aws-efs-csi-driver":
		return runDriver(args, stderr)
	case "csi-node-driver-registrar":
		return runRegistrar(args, stderr)
	case "livenessprobe":
		return runLiveness(args, stderr)
	}
	fmt.Fprintf(stderr, "unknown role %q: want aws-efs-csi-driver, csi-node-driver-registrar or livenessprobe\n", name)
	return 2
}

// newLogger logs text to stderr; upstream's -v of 4 and above (its debug
// levels) turn on debug records.
func newLogger(stderr io.Writer, v int, role string) *slog.Logger {
	level := slog.LevelInfo
	if v >= 4 {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("role", role)
}
