package main

import (
	"fmt"

	"golang.org/x/sys/windows"

	"kassa-agent/agent/internal/servicectl"
)

// restrictDataDir gives full control to SYSTEM, Administrators and the service's
// virtual account (NT SERVICE\kassa-agent) only, inherited by everything inside,
// and cuts inheritance from %ProgramData% (which lets every user read): whoever
// reads the token can take payments at this till.
func restrictDataDir(dir string) error {
	sd, err := windows.SecurityDescriptorFromString(servicectl.DataDirSDDL())
	if err != nil {
		return fmt.Errorf("security descriptor: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("security descriptor: %w", err)
	}
	err = windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("restrict to SYSTEM, Administrators and %s: %w", servicectl.WindowsAccount, err)
	}
	return nil
}
