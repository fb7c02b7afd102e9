package main

import (
	"fmt"
	"io"

	"kassa-agent/agent/internal/config"
)

func configFlag(fs interface {
	StringVar(*string, string, string, string)
}) *string {
	p := new(string)
	fs.StringVar(p, "config", config.DefaultPath(), "configuration file")
	return p
}

func cmdConfig(args []string, out, errOut io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(errOut, "usage: kassa-agent config check|example [--config FILE]")
		return exitUsage
	}
	fs := flags("config "+args[0], errOut)
	path := configFlag(fs)
	if code, ok := parse(fs, args[1:]); !ok {
		return code
	}
	if !noArgs(fs, errOut) {
		return exitUsage
	}
	switch args[0] {
	case "example":
		_, _ = out.Write(config.Example)
		return exitOK
	case "check":
		c, err := config.Load(*path)
		if err != nil {
			return fail(errOut, err)
		}
		fmt.Fprintf(out, "%s: OK\n", *path)
		fmt.Fprintf(out, "  API         %s\n", c.API.Listen)
		fmt.Fprintf(out, "  data        %s\n", c.Store.Dir)
		fmt.Fprintf(out, "  scanner     %s\n", onOff(c.Scanner.Enabled))
		fmt.Fprintf(out, "  register    %s\n", onOff(c.Register.Enabled))
		fmt.Fprintf(out, "  smartpay    %s\n", onOff(c.SmartPay.Enabled))
		fmt.Fprintf(out, "  alif        %s\n", onOff(c.Alif.Enabled))
		fmt.Fprintf(out, "  alikassa    %s\n", onOff(c.AliKassa.Enabled))
		return exitOK
	default:
		fmt.Fprintf(errOut, "kassa-agent config: unknown subcommand %q; use check or example\n", args[0])
		return exitUsage
	}
}

func onOff(b bool) string {
	if b {
		return "enabled"
	}
	return "disabled"
}
