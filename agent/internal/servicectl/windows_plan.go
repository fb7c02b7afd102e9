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
	fmt.Fprintf(w, "  name:      %s (%s)\n", c.Name, c.DisplayName)
	fmt.Fprintf(w, "  command:   %q %s\n", exe, strings.Join(quoteAll(c.Arguments), " "))
	fmt.Fprintf(w, "  account:   %s (virtual service account, SID %s), not LocalSystem\n", WindowsAccount, ServiceSID(Name))
	fmt.Fprintf(w, "  start:     automatic, delayed\n")
	fmt.Fprintf(w, "  recovery:  restart after %s (the last repeats), failures counted over %s, non-zero exits included\n",
		strings.Join(delays, ", "), RecoveryResetPeriod)
	fmt.Fprintf(w, "and create each data directory if absent, with only SYSTEM, Administrators and %s allowed in:\n", WindowsAccount)
	for _, d := range dataDirs {
		fmt.Fprintf(w, "  %s  %s\n", d, DataDirSDDL())
	}
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = fmt.Sprintf("%q", a)
	}
	return out
}
