package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"kassa-agent/agent/internal/config"
)

func cmdDemo(args []string, out, errOut io.Writer) int {
	fs := flags("demo", errOut)
	dir := fs.String("dir", "demo-data", "directory for the demo's store, token and config")
	listen := fs.String("listen", "127.0.0.1:8717", "address of the local API")
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
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fail(errOut, err)
	}
	cfgPath := filepath.Join(abs, "config.toml")
	src := fmt.Sprintf("# Written by `kassa-agent demo`: no hardware, no network.\n[api]\nlisten = %q\n[store]\ndir = %q\n[log]\nformat = \"text\"\n", *listen, abs)
	if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
		return fail(errOut, err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fail(errOut, err)
	}
	p := &program{cfg: cfg, errOut: errOut}
	p.prepare = func(ctx context.Context, log *slog.Logger) (func(), error) {
		fmt.Fprintf(out, `
kassa-agent demo — devices and providers are disabled in this build of the demo;
the agent runs with its store and local API only.

  token:   %[1]s
  status:  curl -H "Authorization: Bearer $(cat %[1]s)" http://%[2]s/v1/status
  health:  curl http://%[2]s/v1/health

Stop with Ctrl+C.
`, cfg.API.TokenFile, cfg.API.Listen)
		return func() {}, nil
	}
	return runService(p, cfgPath, errOut)
}
