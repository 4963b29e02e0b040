// Command ftp-operator is the single binary of the project: the Kubernetes controller
// (`ftp-operator manager`) and the FTP daemon it deploys (`ftp-operator ftpd`). Shipping both in
// one image means the operator and the daemons it runs can never be at different versions.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// subcommand is one verb of the binary. run receives the arguments after the verb.
type subcommand struct {
	name    string
	summary string
	run     func(args []string) error
}

func subcommands() []subcommand {
	return []subcommand{
		{name: "manager", summary: "run the FTPServer controller (in a cluster, or against a kubeconfig)", run: runManager},
		{name: "ftpd", summary: "run the FTP daemon (from an operator-rendered config, or standalone from flags)", run: runFTPD},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: ftp-operator <command> [flags]\n\nCommands:\n")
	for _, c := range subcommands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'ftp-operator <command> --help' for the flags of a command.\n")
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stderr))
}

// dispatch runs the named subcommand and turns its result into an exit code:
// 0 on success or --help, 2 on a usage error, 1 on any other failure.
func dispatch(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(os.Stdout)
		return 0
	}
	for _, c := range subcommands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:])
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(usageError)):
			fmt.Fprintf(stderr, "ftp-operator %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "ftp-operator %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "ftp-operator: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// usageError marks errors caused by bad command-line input (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
