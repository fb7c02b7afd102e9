package servicectl

import (
	"fmt"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/mgr"
)

const adminHint = "open the command prompt with \"Run as administrator\""

func isAdmin() bool {
	return windows.GetCurrentProcessToken().IsElevated()
}

// afterInstall sets restart-on-failure recovery, including for a non-zero exit.
func afterInstall() error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(Name)
	if err != nil {
		return fmt.Errorf("open service: %w", err)
	}
	defer s.Close()
	if err := s.SetRecoveryActions(windowsActions(), uint32(RecoveryResetPeriod.Seconds())); err != nil {
		return fmt.Errorf("set recovery actions: %w", err)
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("set recovery on non-crash failures: %w", err)
	}
	return nil
}

func windowsActions() []mgr.RecoveryAction {
	out := make([]mgr.RecoveryAction, 0, len(RecoveryActions))
	for _, a := range RecoveryActions {
		t := mgr.NoAction
		if a.Restart {
			t = mgr.ServiceRestart
		}
		out = append(out, mgr.RecoveryAction{Type: t, Delay: a.Delay})
	}
	return out
}
