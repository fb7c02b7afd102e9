package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"kassa-agent/agent/internal/servicectl"
)

// install registers the service under its virtual account, then gives that
// account the data directories: one left by a LocalSystem install allows only
// SYSTEM and Administrators, and the service could not fix that itself.
func install(in installation, dryRun bool, out, errOut io.Writer) int {
	if dryRun {
		servicectl.WriteWindowsPlan(out, in.exe, in.configPath, in.writeDirs)
		for _, pr := range in.problems {
			fmt.Fprintf(errOut, "install would refuse: %s\n", pr)
		}
		if len(in.problems) > 0 {
			return exitFail
		}
		return exitOK
	}
	if len(in.problems) > 0 {
		return fail(errOut, fmt.Errorf("install %s: %s", servicectl.Name, strings.Join(in.problems, "; ")))
	}
	s, err := servicectl.New(&program{configPath: in.configPath}, in.configPath)
	if err != nil {
		return fail(errOut, err)
	}
	if err := servicectl.Control(s, "install"); err != nil {
		return fail(errOut, err)
	}
	for _, d := range in.writeDirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fail(errOut, fmt.Errorf("installed, but the data directory %s: %w", d, err))
		}
		if err := restrictDataDir(d); err != nil {
			return fail(errOut, fmt.Errorf("installed, but the data directory %s: %w", d, err))
		}
	}
	fmt.Fprintf(out, "%s: install done\n", servicectl.Name)
	return exitOK
}
