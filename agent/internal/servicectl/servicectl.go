// Package servicectl installs and controls kassa-agent as an OS service: systemd
// on Linux (our own hardened unit, its own system user) and the Windows service
// manager (a virtual service account, recovery actions, which the service
// library leaves off unless told).
package servicectl

import (
	"errors"
	"fmt"
	"time"

	"github.com/kardianos/service"
)

// Name is the service's name on both systems.
const Name = "kassa-agent"

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
		// Never root or LocalSystem: the kassa-agent user on Linux (the unit
		// names it too), the virtual account NT SERVICE\kassa-agent on Windows.
		UserName: serviceAccount,
		Option: service.KeyValue{
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

// Control runs install, uninstall, start, stop or restart. Install here is the
// service library's (Windows), followed by the recovery actions and the service
// SID type; Linux installs with a Plan instead. Each refuses clearly without
// administrator rights.
func Control(s service.Service, action string) error {
	if action == "install" && !libraryInstalls {
		// The library's systemd unit is not ours: none of the hardening, no user.
		return fmt.Errorf("install %s: use PlanLinux and Apply on this system", Name)
	}
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
