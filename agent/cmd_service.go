package main

import (
	"fmt"
	"io"
	"path/filepath"

	"kassa-agent/agent/internal/servicectl"
)

func serviceCmd(action string) func(args []string, out, errOut io.Writer) int {
	return func(args []string, out, errOut io.Writer) int {
		fs := flags(action, errOut)
		path := configFlag(fs)
		if code, ok := parse(fs, args); !ok {
			return code
		}
		if !noArgs(fs, errOut) {
			return exitUsage
		}
		abs, err := filepath.Abs(*path)
		if err != nil {
			return fail(errOut, err)
		}
		s, err := servicectl.New(&program{configPath: abs}, abs)
		if err != nil {
			return fail(errOut, err)
		}
		if err := servicectl.Control(s, action); err != nil {
			return fail(errOut, err)
		}
		fmt.Fprintf(out, "%s: %s done\n", servicectl.Name, action)
		return exitOK
	}
}

func cmdStatus(args []string, out, errOut io.Writer) int {
	fs := flags("status", errOut)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
	}
	s, err := servicectl.New(&program{}, "")
	if err != nil {
		return fail(errOut, err)
	}
	st, err := servicectl.Status(s)
	if err != nil {
		return fail(errOut, err)
	}
	fmt.Fprintf(out, "%s: %s\n", servicectl.Name, st)
	if st != "running" {
		return exitFail
	}
	return exitOK
}
