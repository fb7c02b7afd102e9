//go:build !windows

package main

import (
	"context"
	"fmt"
	"io"

	"kassa-agent/agent/internal/servicectl"
)

// install writes our hardened systemd unit and creates the service user, by a
// plan worked out from the system's state, so a second run changes nothing.
func install(in installation, dryRun bool, out, errOut io.Writer) int {
	p, err := servicectl.PlanLinux(servicectl.Target{
		Exe: in.exe, ConfigPath: in.configPath, WriteDirs: in.writeDirs, ReadFiles: in.readFiles, Problems: in.problems,
	})
	if err != nil {
		return fail(errOut, err)
	}
	if dryRun {
		p.Write(out)
		for _, pr := range p.Problems {
			fmt.Fprintf(errOut, "install would refuse: %s\n", pr)
		}
		if len(p.Problems) > 0 {
			return exitFail
		}
		return exitOK
	}
	if err := p.Apply(context.Background(), out); err != nil {
		return fail(errOut, err)
	}
	fmt.Fprintf(out, "%s: install done\n", servicectl.Name)
	return exitOK
}
