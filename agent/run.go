package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/kardianos/service"

	"kassa-agent/agent/internal/config"
	"kassa-agent/agent/internal/servicectl"
)

// stopGrace is how long in-flight API requests get to finish on stop.
const stopGrace = 10 * time.Second

func cmdRun(args []string, out, errOut io.Writer) int {
	fs := flags("run", errOut)
	path := configFlag(fs)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return fail(errOut, err)
	}
	return runService(&program{cfg: cfg, errOut: errOut}, *path, errOut)
}

// runService runs p under the service manager when started by one, or in the
// foreground until SIGINT/SIGTERM otherwise.
func runService(p *program, configPath string, errOut io.Writer) int {
	s, err := servicectl.New(p, configPath)
	if err != nil {
		return fail(errOut, err)
	}
	if err := s.Run(); err != nil {
		return fail(errOut, err)
	}
	if p.failed.Load() {
		return exitFail
	}
	return exitOK
}

// program adapts the agent to the service manager's Start/Stop.
type program struct {
	configPath string
	cfg        config.Config
	errOut     io.Writer
	// prepare, when set, runs before the agent starts (the demo starts its
	// simulators here).
	prepare func(ctx context.Context, log *slog.Logger) (cleanup func(), err error)

	cancel  context.CancelFunc
	done    chan struct{}
	cleanup func()
	failed  atomic.Bool
}

// Start opens everything that can fail at once (store, token, listener) so a
// second instance or a bad setting fails with a clear message and a non-zero exit.
func (p *program) Start(s service.Service) error {
	log := newLogger(p.cfg.Log, service.Interactive(), p.errOut)
	slog.SetDefault(log)
	ctx, cancel := context.WithCancel(context.Background())
	if p.prepare != nil {
		cleanup, err := p.prepare(ctx, log)
		if err != nil {
			cancel()
			return err
		}
		p.cleanup = cleanup
	}
	a, err := openApp(ctx, p.cfg, log)
	if err != nil {
		cancel()
		if p.cleanup != nil {
			p.cleanup()
		}
		return err
	}
	p.cancel = cancel
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		if err := a.run(ctx); err != nil {
			log.Error("agent stopped on an error", "err", err)
			p.failed.Store(true)
			// The service manager restarts us; nothing is lost, the store is closed.
			if p.cleanup != nil {
				p.cleanup()
			}
			os.Exit(exitFail)
		}
	}()
	return nil
}

// Stop asks the agent to finish and waits until the store is closed.
func (p *program) Stop(s service.Service) error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	select {
	case <-p.done:
	case <-time.After(stopGrace + 5*time.Second):
		return errors.New("the agent did not stop in time")
	}
	if p.cleanup != nil {
		p.cleanup()
	}
	slog.Info("kassa-agent stopped")
	return nil
}

func newLogger(c config.Log, interactive bool, w io.Writer) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	jsonOut := c.Format == "json" || (c.Format == "auto" && !interactive)
	if jsonOut {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func listenPort(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return 0, fmt.Errorf("port %q: %w", p, err)
	}
	return n, nil
}
