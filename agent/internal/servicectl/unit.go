package servicectl

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// User is the system user the Linux service runs as; install creates it.
const User = Name

// SerialGroup owns the serial devices on Debian/Ubuntu (and in our udev rules).
const SerialGroup = "dialout"

// StateDir is the systemd StateDirectory: the default store.dir.
const StateDir = "/var/lib/" + Name

// SerialModules are loaded at boot (modules-load.d) because DeviceAllow=char-ttyUSB
// and char-ttyACM are looked up in /proc/devices when the service starts: a class
// whose driver is not loaded yet is left out, and a scanner plugged in later would
// be refused until a restart.
var SerialModules = []string{"usbserial", "cdc_acm"}

// Unit is what the systemd unit depends on in one installation.
type Unit struct {
	Exe  string   // absolute path of the binary
	Args []string // its arguments: run --config FILE
	// ReadWrite are directories the agent writes outside StateDir (a store.dir or
	// an API token elsewhere); ProtectSystem=strict makes everything else read-only.
	ReadWrite []string
}

// unitHead and unitTail surround ExecStart and ReadWritePaths. The hardening
// follows issue #13 (goal: systemd-analyze security ≤ 2.5); the comments in the
// unit say why each group is there, for whoever reads it on the till.
const unitHead = `[Unit]
Description=%s
Documentation=https://github.com/kassa-agent
# Providers are unreachable before the network is.
After=network-online.target systemd-modules-load.service
Wants=network-online.target
# Never give up restarting: a till without its agent cannot take payments.
StartLimitIntervalSec=0

[Service]
Type=simple
`

const unitTail = `Restart=always
RestartSec=2
# In-flight requests get their grace period, then the store closes.
TimeoutStopSec=30
KillMode=mixed

# Its own system user (created by kassa-agent install); dialout owns the serial ports.
User=kassa-agent
Group=kassa-agent
SupplementaryGroups=dialout
StateDirectory=kassa-agent
StateDirectoryMode=0700
UMask=0077

# No capabilities at all: serial ports, loopback and outbound HTTPS need none.
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes

# Devices: only serial classes, by class so a re-plugged USB device under a new
# name still works (the pseudo devices /dev/null, /dev/urandom… stay allowed).
DevicePolicy=closed
DeviceAllow=char-ttyS rw
DeviceAllow=char-ttyUSB rw
DeviceAllow=char-ttyACM rw

# Files: the whole system read-only, the data directory writable, homes and
# other users' /tmp invisible.
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateMounts=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
# Only root, nobody and kassa-agent exist inside; the unmapped dialout group
# still grants the serial devices (the kernel checks the real group id).
PrivateUsers=yes

# Network: the journal (AF_UNIX), the local API and the providers (IPv4/IPv6).
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
`

// Render writes the unit. It refuses a value systemd could not read back as
// written: a control character would end or split the line, and a line that is
// not UTF-8 is dropped.
func (u Unit) Render() (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, unitHead, Config("").Description)
	words := append([]string{u.Exe}, u.Args...)
	b.WriteString("ExecStart=")
	for i, w := range words {
		q, err := quote(w, true)
		if err != nil {
			return "", fmt.Errorf("ExecStart: %w", err)
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(q)
	}
	b.WriteByte('\n')
	if len(u.ReadWrite) > 0 {
		b.WriteString("ReadWritePaths=")
		for i, p := range u.ReadWrite {
			q, err := quote(p, false)
			if err != nil {
				return "", fmt.Errorf("ReadWritePaths: %w", err)
			}
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(q)
		}
		b.WriteByte('\n')
	}
	b.WriteString(unitTail)
	return b.String(), nil
}

// quote makes one word of a systemd command line or path list: double quotes
// with C escapes, %% for a literal % (specifiers) and, in a command line, $$ for
// a literal $ (variable expansion happens only there).
func quote(s string, command bool) (string, error) {
	if !utf8.ValidString(s) {
		// systemd ignores a unit line that is not UTF-8.
		return "", fmt.Errorf("%q is not valid UTF-8", s)
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			return "", fmt.Errorf("%q has a control character", s)
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '%':
			b.WriteString("%%")
		case r == '$' && command:
			b.WriteString("$$")
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}
