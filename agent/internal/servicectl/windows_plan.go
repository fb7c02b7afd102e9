package servicectl

import (
	"fmt"
	"io"
	"strings"
)

// WriteWindowsPlan prints what install does on Windows, for install --dry-run.
func WriteWindowsPlan(w io.Writer, exe, configPath string, dataDirs []string) {
	c := Config(configPath)
	delays := make([]string, len(RecoveryActions))
	for i, a := range RecoveryActions {
		delays[i] = a.Delay.String()
	}
	fmt.Fprintf(w, "kassa-agent install would create the Windows service:\n")
	fmt.Fprintf(w, "  name:      %s, shown as %q\n", c.Name, c.DisplayName)
	fmt.Fprintf(w, "  command:   %s\n", strings.Join(quoteAll(append([]string{exe}, c.Arguments...)), " "))
	fmt.Fprintf(w, "  account:   %s (virtual service account, SID %s), not LocalSystem\n", WindowsAccount, ServiceSID(Name))
	fmt.Fprintf(w, "  start:     automatic, delayed\n")
	fmt.Fprintf(w, "  recovery:  restart after %s (the last repeats), failure count reset after %.0f h without one, non-zero exits included\n",
		strings.Join(delays, ", "), RecoveryResetPeriod.Hours())
	fmt.Fprintf(w, "and create each data directory if absent, with only SYSTEM, Administrators and %s allowed in:\n", WindowsAccount)
	for _, d := range dataDirs {
		fmt.Fprintf(w, "  %s  %s\n", d, DataDirSDDL())
	}
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		// The service manager's command line: Windows quoting, backslashes as they are.
		out[i] = `"` + a + `"`
	}
	return out
}
