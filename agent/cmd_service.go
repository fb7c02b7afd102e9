package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"kassa-agent/agent/internal/config"
	"kassa-agent/agent/internal/servicectl"
)

func serviceCmd(action string) func(args []string, out, errOut io.Writer) int {
	return func(args []string, out, errOut io.Writer) int {
		fs := flags(action, errOut)
		path := configFlag(fs)
		if code, ok := parse(fs, args); !ok {
			return code
		}
		if !noArgs(fs, errOut) {
			return exitUsage
		}
		abs, err := filepath.Abs(*path)
		if err != nil {
			return fail(errOut, err)
		}
		s, err := servicectl.New(&program{configPath: abs}, abs)
		if err != nil {
			return fail(errOut, err)
		}
		if err := servicectl.Control(s, action); err != nil {
			return fail(errOut, err)
		}
		fmt.Fprintf(out, "%s: %s done\n", servicectl.Name, action)
		return exitOK
	}
}

// installation is what install needs to know from the binary and its config.
type installation struct {
	exe, configPath string
	writeDirs       []string // store.dir and the API token's directory
	readFiles       []string // the config and the secret files it names
	problems        []string
}

func cmdInstall(args []string, out, errOut io.Writer) int {
	fs := flags("install", errOut)
	path := configFlag(fs)
	dry := fs.Bool("dry-run", false, "print what install would write and change, and change nothing (needs no administrator rights)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
	}
	abs, err := filepath.Abs(*path)
	if err != nil {
		return fail(errOut, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(errOut, fmt.Errorf("where is this binary: %w", err))
	}
	return install(newInstallation(exe, abs), *dry, out, errOut)
}

// newInstallation reads the config for the paths the service needs. A config
// that does not load is a problem install reports, not a reason to show nothing.
func newInstallation(exe, configPath string) installation {
	in := installation{exe: exe, configPath: configPath}
	cfg, err := config.Load(configPath)
	if err != nil {
		in.problems = append(in.problems, err.Error())
		cfg = config.Default()
	}
	if !errors.Is(err, fs.ErrNotExist) {
		// Said once: a missing config is already the problem above.
		in.readFiles = append(in.readFiles, configPath)
	}
	token := cfg.API.TokenFile
	if token == "" {
		token = filepath.Join(cfg.Store.Dir, "api-token")
	}
	in.writeDirs = []string{cfg.Store.Dir, filepath.Dir(token)}
	add := func(enabled bool, files ...string) {
		for _, f := range files {
			if enabled && f != "" {
				in.readFiles = append(in.readFiles, f)
			}
		}
	}
	add(cfg.SmartPay.Enabled, cfg.SmartPay.CertFile, cfg.SmartPay.KeyFile, cfg.SmartPay.CAFile)
	add(cfg.Alif.Enabled, cfg.Alif.TokenFile, cfg.Alif.WebhookKey)
	add(cfg.AliKassa.Enabled, cfg.AliKassa.PrivateKeyFile, cfg.AliKassa.PasswordFile, cfg.AliKassa.NotifyPublicKey)
	return in
}

func cmdStatus(args []string, out, errOut io.Writer) int {
	fs := flags("status", errOut)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
	}
	s, err := servicectl.New(&program{}, "")
	if err != nil {
		return fail(errOut, err)
	}
	st, err := servicectl.Status(s)
	if err != nil {
		return fail(errOut, err)
	}
	fmt.Fprintf(out, "%s: %s\n", servicectl.Name, st)
	if st != "running" {
		return exitFail
	}
	return exitOK
}
