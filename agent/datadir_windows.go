package main

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// dataDirDACL gives full control to SYSTEM and Administrators only, inherited by
// everything inside, and cuts inheritance from %ProgramData% (which lets every
// user read): whoever reads the token can take payments at this till.
const dataDirDACL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

func restrictDataDir(dir string) error {
	sd, err := windows.SecurityDescriptorFromString(dataDirDACL)
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
		return fmt.Errorf("restrict to SYSTEM and Administrators: %w", err)
	}
	return nil
}
