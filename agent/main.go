// Command kassa-agent is the till's service: it owns the scanner and the fiscal
// register on their serial ports, talks to the payment providers, keeps every
// payment and receipt in a durable store, and serves the POS a local API.
//
// Run `kassa-agent help` for the commands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	// Windows tills have no zoneinfo: register.timezone must still load.
	_ "time/tzdata"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = "unknown"
)

// exit codes
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

type command struct {
	name    string
	args    string
	summary string
	run     func(args []string, out, errOut io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "[--config FILE]", "run in the foreground (what the service manager starts)", cmdRun},
		{"demo", "[--dir DIR] [--listen ADDR]", "run on simulated devices and sandbox providers, no hardware needed", cmdDemo},
		{"install", "[--config FILE] [--dry-run]", "install as an OS service (systemd / Windows service); --dry-run prints the plan", cmdInstall},
		{"uninstall", "", "remove the OS service", serviceCmd("uninstall")},
		{"start", "", "start the installed service", serviceCmd("start")},
		{"stop", "", "stop the service", serviceCmd("stop")},
		{"restart", "", "restart the service", serviceCmd("restart")},
		{"status", "", "show whether the service is installed and running", cmdStatus},
		{"config", "check|example [--config FILE]", "check a configuration file, or print a commented example", cmdConfig},
		{"ports", "[--config FILE] [--json]", "list serial ports and which configured device each one is", cmdPorts},
		{"outbox", "list|retry ID|drop ID [flags]", "show parked deliveries; retry or drop one", cmdOutbox},
		{"diag", "[flags] | scanner --watch", "check config, store, devices and providers (exit 1 warnings, 2 failures); scanner --watch shows each scan", cmdDiag},
		{"simulate", "register|smartpay [flags]", "run one simulated device or provider sandbox alone, for host software", cmdSimulate},
		{"version", "", "print version, commit, Go version and OS/arch", cmdVersion},
		{"help", "", "show this list", nil},
	}
}

func main() { os.Exit(runCLI(os.Args[1:], os.Stdout, os.Stderr)) }

func runCLI(args []string, out, errOut io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(errOut, "usage: kassa-agent <command> [flags]; `kassa-agent help` lists the commands")
		return exitUsage
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		usage(out)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == name && c.run != nil {
			return c.run(args[1:], out, errOut)
		}
	}
	fmt.Fprintf(errOut, "kassa-agent: unknown command %q\nusage: kassa-agent <command> [flags]; `kassa-agent help` lists the commands\n", name)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: kassa-agent <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %-34s %s\n", c.name, c.args, c.summary)
	}
}

// flags makes a flag set that reports mistakes with a short usage and exit 2.
func flags(name string, errOut io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("kassa-agent "+name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	return fs
}

// parse parses args; ok is false when the caller must return code.
func parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

func noArgs(fs *flag.FlagSet, errOut io.Writer) bool {
	if fs.NArg() > 0 {
		fmt.Fprintf(errOut, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return false
	}
	return true
}

func cmdVersion(args []string, out, errOut io.Writer) int {
	fs := flags("version", errOut)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
	}
	fmt.Fprintf(out, "kassa-agent %s (commit %s, %s, %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

func fail(errOut io.Writer, err error) int {
	fmt.Fprintf(errOut, "kassa-agent: %s\n", strings.TrimSpace(err.Error()))
	return exitFail
}
