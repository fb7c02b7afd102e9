// Package servicectl installs and controls kassa-agent as an OS service: systemd
// on Linux (with our own unit) and the Windows service manager (with recovery
// actions, which the service library leaves off unless told).
package servicectl

import (
	"errors"
	"fmt"
	"time"

	"github.com/kardianos/service"
)

// Name is the service's name on both systems.
const Name = "kassa-agent"

// unitTemplate is the systemd unit, in the service library's template syntax.
// Why each line:
//   - After/Wants network-online: providers are unreachable before the network is.
//   - StartLimitIntervalSec=0: never give up restarting; a till without its agent
//     cannot take payments, and every restart retries the outbox.
//   - Restart=always, RestartSec=2: back within seconds after a crash.
//   - SupplementaryGroups=dialout: serial devices are group dialout on Debian/Ubuntu.
//   - StateDirectory: /var/lib/kassa-agent, created with owner-only mode.
//   - TimeoutStopSec: in-flight requests get their grace period, then the store closes.
const unitTemplate = `[Unit]
Description={{Description}}
Documentation=https://github.com/kassa-agent
ConditionFileIsExecutable={{Path | cmdEscape}}
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=0

[Service]
Type=simple
ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}
Restart=always
RestartSec=2
SupplementaryGroups=dialout
StateDirectory=kassa-agent
StateDirectoryMode=0700
ConfigurationDirectory=kassa-agent
UMask=0077
TimeoutStopSec=30
KillMode=mixed
NoNewPrivileges=true
PrivateTmp=true
ProtectSystem=full
ProtectHome=true

[Install]
WantedBy=multi-user.target
`

// Recovery is one Windows service-manager action after a failure.
type Recovery struct {
	Restart bool          // restart the service (the only action we use)
	Delay   time.Duration // wait before acting
}

// RecoveryActions are applied after install on Windows: restart after 5 s, 10 s,
// then every 30 s (the last action repeats), counting failures over a day.
// Non-crash failures (exit code ≠ 0) trigger them too.
var RecoveryActions = []Recovery{
	{Restart: true, Delay: 5 * time.Second},
	{Restart: true, Delay: 10 * time.Second},
	{Restart: true, Delay: 30 * time.Second},
}

// RecoveryResetPeriod is how long without failures resets the failure count.
const RecoveryResetPeriod = 24 * time.Hour

// Config describes the service for the service library.
func Config(configPath string) *service.Config {
	return &service.Config{
		Name:        Name,
		DisplayName: "kassa-agent (till payments and fiscal register)",
		Description: "Connects the till's scanner and fiscal register to Smart Pay, Alif and AliKassa; keeps every payment and receipt durable.",
		Arguments:   []string{"run", "--config", configPath},
		Option: service.KeyValue{
			"SystemdScript": unitTemplate,
			// Windows: start automatically; delayed so the network is up.
			"StartType":        "automatic",
			"DelayedAutoStart": true,
		},
	}
}

// ErrNotAdmin is returned by install and friends without root/Administrator rights.
var ErrNotAdmin = errors.New("this needs administrator rights")

// New wraps the program in a service handle.
func New(p service.Interface, configPath string) (service.Service, error) {
	s, err := service.New(p, Config(configPath))
	if err != nil {
		return nil, fmt.Errorf("service manager: %w", err)
	}
	return s, nil
}

// Control runs install, uninstall, start, stop or restart. Install also sets the
// Windows recovery actions. Each refuses clearly without administrator rights.
func Control(s service.Service, action string) error {
	if !isAdmin() {
		return fmt.Errorf("%s %s: %w (%s)", action, Name, ErrNotAdmin, adminHint)
	}
	if err := service.Control(s, action); err != nil {
		return fmt.Errorf("%s %s: %w", action, Name, err)
	}
	if action == "install" {
		if err := afterInstall(); err != nil {
			return fmt.Errorf("installed, but setting up the service failed: %w", err)
		}
	}
	return nil
}

// Status reports the service's state in words a technician understands.
func Status(s service.Service) (string, error) {
	st, err := s.Status()
	if errors.Is(err, service.ErrNotInstalled) {
		return "not installed", nil
	}
	if err != nil {
		return "", fmt.Errorf("service status: %w", err)
	}
	switch st {
	case service.StatusRunning:
		return "running", nil
	case service.StatusStopped:
		return "stopped", nil
	default:
		return "unknown", nil
	}
}
