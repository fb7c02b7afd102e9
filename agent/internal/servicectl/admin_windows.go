package servicectl

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/mgr"
)

const adminHint = "open the command prompt with \"Run as administrator\""

// serviceAccount is a virtual account rather than LocalSystem: COM ports open
// for any local user, and the data directory's ACL grants its SID.
const serviceAccount = WindowsAccount

// libraryInstalls: the service library creates the Windows service.
const libraryInstalls = true

func isAdmin() bool {
	return windows.GetCurrentProcessToken().IsElevated()
}

// afterInstall sets restart-on-failure recovery, including for a non-zero exit,
// and an unrestricted service SID, which the virtual account's ACL entries name.
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
	sid := uint32(windows.SERVICE_SID_TYPE_UNRESTRICTED)
	if err := windows.ChangeServiceConfig2(s.Handle, windows.SERVICE_CONFIG_SERVICE_SID_INFO, (*byte)(unsafe.Pointer(&sid))); err != nil {
		return fmt.Errorf("set the service SID type: %w", err)
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
