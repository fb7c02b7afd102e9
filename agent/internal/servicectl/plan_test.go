//go:build !windows

package servicectl

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create it")
	assert.Equal(t, string(want), got, "%s differs; run go test -update if the change is meant", path)
}

func hostUnit(t *testing.T) string {
	t.Helper()
	u, err := Unit{Exe: "/usr/local/bin/kassa-agent", Args: Config("/etc/kassa-agent/config.toml").Arguments}.Render()
	require.NoError(t, err)
	return u
}

func planText(p *Plan) string {
	var b bytes.Buffer
	p.Write(&b)
	return b.String()
}

// A till that never had the agent: the user, the driver list, the data
// directory, the config's group, the unit, enabled.
func TestPlanFreshGolden(t *testing.T) {
	p := plan(facts{
		sys:         hostSystem,
		unit:        hostUnit(t),
		groupExists: true,
		dirs:        []dirFact{{path: StateDir}},
		files:       []fileFact{{path: "/etc/kassa-agent/config.toml"}},
	})
	golden(t, "plan-fresh.golden", planText(p))
}

// A till upgraded from the root-run unit: the user is there but not in dialout,
// the data directory belongs to root, the old unit is replaced.
func TestPlanUpgradeFromRootGolden(t *testing.T) {
	p := plan(facts{
		sys:           hostSystem,
		unit:          hostUnit(t),
		groupExists:   true,
		userExists:    true,
		modulesExists: true,
		modulesNow:    modulesFile(),
		unitExists:    true,
		unitNow:       "[Service]\nExecStart=/usr/local/bin/kassa-agent run\n",
		enabled:       true,
		dirs:          []dirFact{{path: StateDir, exists: true, perm: 0o700}},
		files:         []fileFact{{path: "/etc/kassa-agent/config.toml", readable: true}},
	})
	golden(t, "plan-upgrade.golden", planText(p))
}

// Installed as planned: a second install changes nothing.
func TestPlanInstalledGolden(t *testing.T) {
	unit := hostUnit(t)
	p := plan(facts{
		sys: hostSystem, unit: unit,
		groupExists: true, userExists: true, inGroup: true,
		modulesExists: true, modulesNow: modulesFile(),
		unitExists: true, unitNow: unit, enabled: true,
		dirs:  []dirFact{{path: StateDir, exists: true, owned: true, perm: 0o700}},
		files: []fileFact{{path: "/etc/kassa-agent/config.toml", readable: true}},
	})
	assert.Empty(t, p.Steps)
	golden(t, "plan-installed.golden", planText(p))
}

func TestWindowsPlanGolden(t *testing.T) {
	var b bytes.Buffer
	WriteWindowsPlan(&b, `C:\Program Files\kassa-agent\kassa-agent.exe`, `C:\ProgramData\kassa-agent\config.toml`, []string{`C:\ProgramData\kassa-agent`})
	golden(t, "plan-windows.golden", b.String())
}

// The plan read from a real file system: after doing what it says, planning
// again finds nothing to do. The service user is the current user (it exists),
// its serial group the user's own group, so no step needs root.
func TestPlanIdempotentOnRealFiles(t *testing.T) {
	me, err := user.Current()
	require.NoError(t, err)
	grp, err := user.LookupGroupId(me.Gid)
	require.NoError(t, err)
	root := t.TempDir()
	sys := system{
		user: me.Username, group: grp.Name,
		unitDir:    filepath.Join(root, "etc/systemd/system"),
		wantsDir:   filepath.Join(root, "etc/systemd/system/multi-user.target.wants"),
		modulesDir: filepath.Join(root, "etc/modules-load.d"),
		stateDir:   filepath.Join(root, "var/lib/kassa-agent"),
	}
	cfg := filepath.Join(root, "etc/kassa-agent/config.toml")
	require.NoError(t, os.MkdirAll(filepath.Dir(cfg), 0o755))
	require.NoError(t, os.WriteFile(cfg, []byte("# config\n"), 0o600))
	target := Target{Exe: "/usr/local/bin/kassa-agent", ConfigPath: cfg, WriteDirs: []string{sys.stateDir, sys.stateDir}, ReadFiles: []string{cfg}}

	p, err := planOn(sys, target)
	require.NoError(t, err)
	var cmds []string
	for _, s := range p.Steps {
		if s.Argv != nil {
			cmds = append(cmds, s.Argv[0]+" "+s.Argv[1])
			continue
		}
		// The real writes install makes.
		require.NoError(t, s.run(context.Background()))
	}
	assert.Equal(t, []string{"modprobe -a", "install -d", "systemctl daemon-reload", "systemctl enable"}, cmds,
		"an existing user in its group, an owner-readable config: no user or permission steps")
	assert.NotContains(t, p.Unit, "ReadWritePaths", "the data directory is the StateDirectory")
	// What the commands would have done: the data directory, the enable link.
	require.NoError(t, os.MkdirAll(sys.stateDir, 0o700))
	require.NoError(t, os.MkdirAll(sys.wantsDir, 0o755))
	require.NoError(t, os.Symlink(p.UnitPath, filepath.Join(sys.wantsDir, Name+".service")))

	again, err := planOn(sys, target)
	require.NoError(t, err)
	assert.Empty(t, again.Steps, "a second install must change nothing:\n%s", planText(again))

	// Drift is repaired, and only the drift.
	require.NoError(t, os.Chmod(sys.stateDir, 0o755))
	require.NoError(t, os.WriteFile(p.UnitPath, []byte(strings.Replace(p.Unit, "PrivateUsers=yes", "PrivateUsers=no", 1)), 0o644))
	drift, err := planOn(sys, target)
	require.NoError(t, err)
	var got []string
	for _, s := range drift.Steps {
		got = append(got, s.String())
	}
	assert.Equal(t, []string{"chmod 0700 " + sys.stateDir, "write " + p.UnitPath + " (mode 0644)", "systemctl daemon-reload"}, got)
}

// What the service cannot see or must not write is refused before anything changes.
func TestPlanProblems(t *testing.T) {
	root := t.TempDir()
	sys := hostSystem
	sys.unitDir, sys.wantsDir, sys.modulesDir = root, root, root
	cfg := filepath.Join(root, "config.toml")
	require.NoError(t, os.WriteFile(cfg, nil, 0o644))
	p, err := planOn(sys, Target{
		Exe:        "/home/till/kassa-agent",
		ConfigPath: cfg,
		WriteDirs:  []string{root},
		ReadFiles:  []string{cfg, "/etc/kassa-agent/missing.pem"},
		Problems:   []string{"config: bad"},
	})
	require.NoError(t, err)
	all := strings.Join(p.Problems, "\n")
	assert.Contains(t, all, "config: bad")
	assert.Contains(t, all, "the binary /home/till/kassa-agent is under /home")
	assert.Contains(t, all, "the config "+cfg+" is inside "+root+", which the agent writes")
	assert.Contains(t, all, "/etc/kassa-agent/missing.pem")
	assert.Contains(t, p.Unit, "ReadWritePaths=\""+root+"\"\n")
	err = p.Apply(context.Background(), new(bytes.Buffer))
	assert.ErrorIs(t, err, ErrProblems)
}

// The service library's own systemd install would write a unit with none of the
// hardening and no user: on Linux Control refuses it before touching anything.
func TestControlRefusesLibraryInstall(t *testing.T) {
	err := Control(nil, "install")
	assert.ErrorContains(t, err, "use PlanLinux")
}
