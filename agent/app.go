package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"time"

	"kassa-agent/agent/internal/config"
	"kassa-agent/agent/internal/localapi"
	"kassa-agent/queue"
)

// app is one running agent: its store, its API and the workers between them.
type app struct {
	cfg     config.Config
	log     *slog.Logger
	store   *queue.Store
	api     *localapi.Server
	ln      net.Listener
	started time.Time
}

// openApp acquires everything the agent needs, in an order that fails fast and
// releases what it took when a later step fails.
func openApp(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, started: time.Now()}
	if err := os.MkdirAll(cfg.Store.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", cfg.Store.Dir, err)
	}
	st, err := queue.Open(cfg.StorePath(), queue.Options{
		OpenTimeout: cfg.Store.OpenTimeout.D(),
		OnCorrupt:   cfg.Store.OnCorrupt,
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	a.store = st
	defer func() {
		if err != nil {
			_ = st.Close()
		}
	}()
	if r := st.Recovered(); r != nil {
		log.Error("STORE WAS DAMAGED: the damaged file was moved aside and the agent started on an empty store; payments recorded only there need a technician",
			"path", r.Path, "moved_to", r.MovedTo, "reason", r.Reason)
	}

	token, err := localapi.LoadOrCreateToken(cfg.API.TokenFile)
	if err != nil {
		return nil, err
	}
	port, err := listenPort(cfg.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("api.listen: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("local API cannot listen on %s (is another program using the port?): %w", cfg.API.Listen, err)
	}
	a.ln = ln
	if cfg.API.AllowRemote {
		log.Warn("local API is bound to a non-loopback address as configured (api.allow_remote = true); anyone on the network who has the token can take payments", "listen", cfg.API.Listen)
	}
	a.api = localapi.New(localapi.Options{
		Token:  token,
		Port:   port,
		Logger: log,
		Status: a.status,
	})
	return a, nil
}

// run serves until ctx ends, then stops the API (in-flight requests get a grace
// period) and closes the store last, so nothing writes to a closed store.
func (a *app) run(ctx context.Context) error {
	a.log.Info("kassa-agent started", "version", version, "api", a.ln.Addr().String(), "store", a.store.Path(),
		"token_file", a.cfg.API.TokenFile)
	err := a.api.Serve(ctx, a.ln, stopGrace)
	if cerr := a.store.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	a.log.Info("store closed", "path", a.store.Path())
	return err
}

type statusBody struct {
	Version   string          `json:"version"`
	Commit    string          `json:"commit"`
	GoVersion string          `json:"go_version"`
	Platform  string          `json:"platform"`
	StartedAt time.Time       `json:"started_at"`
	UptimeSec int64           `json:"uptime_seconds"`
	Store     storeStatus     `json:"store"`
	Devices   map[string]part `json:"devices"`
	Providers map[string]part `json:"providers"`
}

type storeStatus struct {
	Path      string `json:"path"`
	SizeBytes int64  `json:"size_bytes"`
	// Damaged is set when the store was found damaged at start and moved aside.
	Damaged *damaged `json:"damaged,omitempty"`
}

type damaged struct {
	MovedTo string    `json:"moved_to"`
	Reason  string    `json:"reason"`
	Found   time.Time `json:"found"`
}

type part struct {
	Configured bool `json:"configured"`
}

func (a *app) status(ctx context.Context) any {
	size, _ := a.store.Size()
	b := statusBody{
		Version: version, Commit: commit, GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
		StartedAt: a.started.UTC(), UptimeSec: int64(time.Since(a.started).Seconds()),
		Store: storeStatus{Path: a.store.Path(), SizeBytes: size},
		Devices: map[string]part{
			"scanner":  {Configured: a.cfg.Scanner.Enabled},
			"register": {Configured: a.cfg.Register.Enabled},
		},
		Providers: map[string]part{
			"smartpay": {Configured: a.cfg.SmartPay.Enabled},
			"alif":     {Configured: a.cfg.Alif.Enabled},
			"alikassa": {Configured: a.cfg.AliKassa.Enabled},
		},
	}
	if r := a.store.Recovered(); r != nil {
		b.Store.Damaged = &damaged{MovedTo: r.MovedTo, Reason: r.Reason, Found: r.Found}
	}
	return b
}
