package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"kassa-agent/fiscal/shtrihsim"
	"kassa-agent/payments/smartpay/sandbox"
)

// simulator is one device or provider `kassa-agent simulate` runs alone, for a POS
// vendor to develop against. Adding one is one row in simulators.
type simulator struct {
	name    string
	args    string
	summary string
	run     func(ctx context.Context, args []string, out, errOut io.Writer) int
}

func simulators() []simulator {
	return []simulator{
		{"register", "--tcp ADDR | --pty LINK [--state FILE] [--tape FILE] [--stray-ff] [--baud N]",
			"the Shtrih-M fiscal register (protocol v1) on a TCP port or a pseudo-terminal", simulateRegister},
		{"smartpay", "--listen ADDR [--dir DIR] [--processing D]",
			"the Smart Pay SBP sandbox (HTTPS with client certificates, written to --dir)", simulateSmartPay},
	}
}

func cmdSimulate(args []string, out, errOut io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		w := errOut
		code := exitUsage
		if len(args) > 0 {
			w, code = out, exitOK
		}
		simulateUsage(w)
		return code
	}
	for _, s := range simulators() {
		if s.name == args[0] {
			// Runs until SIGINT/SIGTERM: it is a device on the bench, not a job.
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return s.run(ctx, args[1:], out, errOut)
		}
	}
	fmt.Fprintf(errOut, "kassa-agent simulate: unknown simulator %q\n", args[0])
	simulateUsage(errOut)
	return exitUsage
}

func simulateUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: kassa-agent simulate <what> [flags]; runs until interrupted")
	fmt.Fprintln(w)
	for _, s := range simulators() {
		fmt.Fprintf(w, "  %-9s %s\n  %-9s   %s\n", s.name, s.args, "", s.summary)
	}
}

func simulateRegister(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := flags("simulate register", errOut)
	tcp := fs.String("tcp", "", "serve on this TCP address, e.g. 127.0.0.1:7778 (a network model: a connection per host, or per command)")
	link := fs.String("pty", "", "create a pseudo-terminal and make this path a symlink to it (Linux), for host software that opens a serial port")
	statePath := fs.String("state", "", "keep the FN journal and device state in this JSON file across restarts (default: memory only)")
	tape := fs.String("tape", "", "append the printed paper tape to this file")
	stray := fs.Bool("stray-ff", false, "send a stray 0xFF before ACK/NAK, as TCP/RNDIS models do")
	baud := fs.Int("baud", 0, "emulate the wire time of every byte at this speed (0 = as fast as the link)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
	}
	if (*tcp == "") == (*link == "") {
		fmt.Fprintln(errOut, "kassa-agent simulate register: give exactly one of --tcp ADDR and --pty LINK")
		fs.Usage()
		return exitUsage
	}
	sim, err := shtrihsim.New(shtrihsim.Options{StatePath: *statePath, TapePath: *tape, StrayFF: *stray, Baud: *baud, OFDOnline: true})
	if err != nil {
		return fail(errOut, err)
	}
	if *tcp != "" {
		ln, err := net.Listen("tcp", *tcp)
		if err != nil {
			return fail(errOut, fmt.Errorf("--tcp: %w", err))
		}
		fmt.Fprintf(out, "Shtrih-M register simulator on tcp %s (password 30; Ctrl-C stops)\n", ln.Addr())
		if err := sim.ServeTCP(ctx, ln); err != nil {
			return fail(errOut, err)
		}
		return exitOK
	}
	pty, err := sim.ServePTY(ctx)
	if err != nil {
		return fail(errOut, err)
	}
	// Replace only a stale symlink: never a file someone else made.
	if fi, err := os.Lstat(*link); err == nil {
		if fi.Mode()&os.ModeSymlink == 0 {
			return fail(errOut, fmt.Errorf("--pty: %s exists and is not a symlink", *link))
		}
		if err := os.Remove(*link); err != nil {
			return fail(errOut, fmt.Errorf("--pty: %w", err))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fail(errOut, fmt.Errorf("--pty: %w", err))
	}
	if err := os.Symlink(pty, *link); err != nil {
		return fail(errOut, fmt.Errorf("--pty: %w", err))
	}
	defer os.Remove(*link)
	fmt.Fprintf(out, "Shtrih-M register simulator on %s -> %s (password 30; Ctrl-C stops)\n", *link, pty)
	<-ctx.Done()
	return exitOK
}

func simulateSmartPay(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := flags("simulate smartpay", errOut)
	listen := fs.String("listen", "127.0.0.1:8719", "loopback address of the sandbox's HTTPS API")
	dir := fs.String("dir", "smartpay-sandbox", "directory the sandbox CA and the till's client certificate and key are written to (new ones at each start)")
	processing := fs.Duration("processing", 3*time.Second, "how long a released payment stays processing before it succeeds")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return fail(errOut, err)
	}
	delay := *processing
	if delay <= 0 {
		delay = sandbox.Immediate
	}
	sb, err := sandbox.Start(sandbox.Options{Addr: *listen, Dir: abs, ProcessingDelay: delay})
	if err != nil {
		return fail(errOut, err)
	}
	defer sb.Close()
	f := sb.Files()
	fmt.Fprintf(out, "Smart Pay sandbox on %s (Ctrl-C stops)\n  CA:          %s\n  client cert: %s\n  client key:  %s\n  admin:       %s/sandbox/\n",
		sb.URL(), f.CAFile, f.CertFile, f.KeyFile, sb.URL())
	<-ctx.Done()
	return exitOK
}
