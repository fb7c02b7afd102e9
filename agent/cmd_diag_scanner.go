package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"unicode/utf8"

	"kassa-agent/agent/internal/config"
	"kassa-agent/device"
	"kassa-agent/device/scanner"
	"kassa-agent/queue"
)

// cmdDiagScanner is `diag scanner --watch`: it reads the configured scanner
// and prints every scan as text and hex until Ctrl+C, so a technician sees
// what the scanner really sends (the suffix, a prefix, GS separators of a
// marking code).
func cmdDiagScanner(args []string, out, errOut io.Writer) int {
	fs := flags("diag scanner", errOut)
	path := configFlag(fs)
	watch := fs.Bool("watch", false, "print each scan as text and hex until Ctrl+C")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
	}
	if !*watch {
		fmt.Fprintln(errOut, "diag scanner: --watch is the only mode (plain diag checks the scanner)")
		return exitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return fail(errOut, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := watchScanner(ctx, cfg, out); err != nil {
		return fail(errOut, err)
	}
	return exitOK
}

// errAgentHoldsScanner: the running agent has the port; two readers of one
// serial line would each see half of every code.
var errAgentHoldsScanner = errors.New("the agent is running and holds the scanner: stop the service first (systemctl stop kassa-agent, or stop it in Windows Services), then watch again")

// watchScanner prints scans until ctx is done. It returns nil when ctx ends
// the watch.
func watchScanner(ctx context.Context, cfg config.Config, out io.Writer) error {
	if !cfg.Scanner.Enabled {
		return errors.New("the scanner is disabled in the config ([scanner] enabled = false)")
	}
	if p := cfg.StorePath(); fileExists(p) {
		st, err := queue.Open(p, queue.Options{OpenTimeout: storeProbeTimeout, OnCorrupt: queue.CorruptRefuse})
		if errors.Is(err, queue.ErrLocked) {
			return errAgentHoldsScanner
		}
		if err == nil {
			_ = st.Close()
		}
	}
	sc := scannerConfig(cfg.Scanner)
	// Every read is shown, repeats too: the double-read filter is for sales.
	sc.DoubleReadWindow = -1
	var mu sync.Mutex
	s, err := scanner.New(sc, scanner.Options{Logger: slog.New(slog.DiscardHandler), OnCode: func(c scanner.Code) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "%s  %d bytes  %s\n", c.At.Format("15:04:05.000"), len(c.Text), scanText(c.Text))
		fmt.Fprintf(out, "              hex  % x\n", c.Text)
	}})
	if err != nil {
		return err
	}
	pc := portConfig(cfg.Scanner.Port)
	name, err := device.Resolve(pc)
	if err != nil {
		return fmt.Errorf("scanner: %w (%s)", err, portHint(err))
	}
	p, err := device.Open(pc)
	if err != nil {
		return fmt.Errorf("scanner: %w (%s)", err, portHint(err))
	}
	defer p.Close()
	mu.Lock()
	fmt.Fprintf(out, "watching the scanner at %s; scan codes, Ctrl+C to stop\n", name)
	mu.Unlock()
	err = s.Run(ctx, p)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("scanner: %w", err)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// controlNames are the control bytes a scanner sends, by their ASCII names.
var controlNames = map[byte]string{0x00: "NUL", 0x04: "EOT", 0x09: "TAB", 0x0A: "LF", 0x0D: "CR", 0x1B: "ESC", 0x1D: "GS", 0x1E: "RS", 0x7F: "DEL"}

// scanText shows a code as text: printable UTF-8 as is, control bytes by
// name (<GS>), other bytes that are not UTF-8 as <xNN>.
func scanText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch c := s[i]; {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, "<x%02X>", c)
		case c < 0x20 || c == 0x7F:
			if name, ok := controlNames[c]; ok {
				b.WriteString("<" + name + ">")
			} else {
				fmt.Fprintf(&b, "<x%02X>", c)
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
