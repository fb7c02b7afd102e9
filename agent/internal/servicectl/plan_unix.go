//go:build !windows

package servicectl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Target is one installation: what the unit runs and what the agent reads and writes.
type Target struct {
	Exe        string   // absolute path of the binary the unit runs
	ConfigPath string   // absolute path of the config file
	WriteDirs  []string // directories the agent writes: store.dir, the API token's
	ReadFiles  []string // files it reads: the config and the secret files it names
	Problems   []string // found by the caller, e.g. the config does not load
}

// system is where install writes and whom it creates. Tests point it at a
// temporary directory and the current user.
type system struct {
	user       string // the service user
	group      string // the serial devices' group
	unitDir    string
	wantsDir   string // WantedBy=multi-user.target: systemctl enable links the unit here
	modulesDir string
	stateDir   string // StateDirectory: writable without ReadWritePaths
}

var hostSystem = system{
	user:       User,
	group:      SerialGroup,
	unitDir:    "/etc/systemd/system",
	wantsDir:   "/etc/systemd/system/multi-user.target.wants",
	modulesDir: "/etc/modules-load.d",
	stateDir:   StateDir,
}

// hiddenDirs are invisible to the service (ProtectHome=yes, PrivateTmp=yes):
// nothing it runs, reads or writes may live there.
var hiddenDirs = []string{"/home", "/root", "/run/user", "/tmp", "/var/tmp"}

// Step is one change install makes: a command, or a file written whole.
type Step struct {
	Argv    []string // the command, or nil
	Path    string   // the file to write when Argv is nil
	Content string
	Mode    fs.FileMode
}

func (s Step) String() string {
	if s.Argv == nil {
		return fmt.Sprintf("write %s (mode %04o)", s.Path, s.Mode)
	}
	words := make([]string, len(s.Argv))
	for i, a := range s.Argv {
		words[i] = shellWord(a)
	}
	return strings.Join(words, " ")
}

func shellWord(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=:,@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Plan is what install would do on this system, worked out without changing it.
type Plan struct {
	UnitPath string
	Unit     string
	Steps    []Step
	Problems []string // install refuses while there are any
}

// dirFact and fileFact are what inspect found about one path.
type dirFact struct {
	path   string
	exists bool
	owned  bool // owned by the service user
	perm   fs.FileMode
}

type fileFact struct {
	path     string
	readable bool // by the service user
}

// facts are everything the plan depends on, gathered by inspect.
type facts struct {
	sys           system
	unit          string
	unitNow       string
	unitExists    bool
	enabled       bool
	groupExists   bool
	userExists    bool
	inGroup       bool
	modulesNow    string
	modulesExists bool
	dirs          []dirFact
	files         []fileFact
	problems      []string
}

// PlanLinux works out what install does on this system. It only reads.
func PlanLinux(t Target) (*Plan, error) { return planOn(hostSystem, t) }

func planOn(sys system, t Target) (*Plan, error) {
	f, err := inspect(sys, t)
	if err != nil {
		return nil, err
	}
	return plan(f), nil
}

// modulesFile is the modules-load.d file's content.
func modulesFile() string {
	return "# kassa-agent: serial drivers loaded at boot, so the unit's DeviceAllow finds their device classes.\n" +
		strings.Join(SerialModules, "\n") + "\n"
}

func plan(f facts) *Plan {
	p := &Plan{UnitPath: filepath.Join(f.sys.unitDir, Name+".service"), Unit: f.unit, Problems: f.problems}
	u, g := f.sys.user, f.sys.group
	add := func(argv ...string) { p.Steps = append(p.Steps, Step{Argv: argv}) }
	if !f.groupExists {
		add("groupadd", "--system", g)
	}
	switch {
	case !f.userExists:
		add("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", "--groups", g, u)
	case !f.inGroup:
		add("usermod", "--append", "--groups", g, u)
	}
	if !f.modulesExists || f.modulesNow != modulesFile() {
		p.Steps = append(p.Steps, Step{Path: filepath.Join(f.sys.modulesDir, Name+".conf"), Content: modulesFile(), Mode: 0o644})
		add(append([]string{"modprobe", "-a"}, SerialModules...)...)
	}
	for _, d := range f.dirs {
		switch {
		case !d.exists:
			add("install", "-d", "-m", "0700", "-o", u, "-g", u, d.path)
			continue
		case !d.owned:
			add("chown", "-R", u+":"+u, d.path)
		}
		if d.perm != 0o700 {
			add("chmod", "0700", d.path)
		}
	}
	for _, fl := range f.files {
		if !fl.readable {
			add("chgrp", u, fl.path)
			add("chmod", "g+r", fl.path)
		}
	}
	if !f.unitExists || f.unitNow != f.unit {
		p.Steps = append(p.Steps, Step{Path: p.UnitPath, Content: f.unit, Mode: 0o644})
		add("systemctl", "daemon-reload")
	}
	if !f.enabled {
		add("systemctl", "enable", Name+".service")
	}
	return p
}

// inspect reads the system's state; it changes nothing.
func inspect(sys system, t Target) (facts, error) {
	f := facts{sys: sys, problems: slices.Clone(t.Problems)}
	var readWrite []string
	problem := func(format string, a ...any) { f.problems = append(f.problems, fmt.Sprintf(format, a...)) }
	hidden := func(what, path string) {
		for _, h := range hiddenDirs {
			if path == h || strings.HasPrefix(path, h+"/") {
				problem("%s %s is under %s, which the service cannot see (ProtectHome, PrivateTmp): move it (binary to /usr/local/bin, config and keys to /etc/%s, data to %s)", what, path, h, Name, StateDir)
				return
			}
		}
	}
	if !filepath.IsAbs(t.Exe) || !filepath.IsAbs(t.ConfigPath) {
		return f, fmt.Errorf("install: the binary %q and the config %q need absolute paths", t.Exe, t.ConfigPath)
	}
	hidden("the binary", t.Exe)
	if st, err := os.Stat(t.Exe); err != nil {
		problem("the binary: %v", err)
	} else if sys, ok := st.Sys().(*syscall.Stat_t); ok && (sys.Uid != 0 || st.Mode().Perm()&0o022 != 0) {
		// Whoever can replace the binary runs code as the service.
		problem("the binary %s can be changed by users other than root (owner uid %d, mode %04o): sudo chown root:root and chmod 0755 it", t.Exe, sys.Uid, st.Mode().Perm())
	}

	var uid, gid, serialGID string
	var userGIDs []string
	if g, err := user.LookupGroup(sys.group); err == nil {
		f.groupExists, serialGID = true, g.Gid
	} else if !errors.As(err, new(user.UnknownGroupError)) {
		return f, fmt.Errorf("look up group %s: %w", sys.group, err)
	}
	if u, err := user.Lookup(sys.user); err == nil {
		f.userExists, uid, gid = true, u.Uid, u.Gid
		if userGIDs, err = u.GroupIds(); err != nil {
			return f, fmt.Errorf("groups of %s: %w", sys.user, err)
		}
		f.inGroup = f.groupExists && slices.Contains(userGIDs, serialGID)
	} else if !errors.As(err, new(user.UnknownUserError)) {
		return f, fmt.Errorf("look up user %s: %w", sys.user, err)
	}

	var err error
	if f.modulesNow, f.modulesExists, err = readIfExists(filepath.Join(sys.modulesDir, Name+".conf")); err != nil {
		return f, err
	}
	unitPath := filepath.Join(sys.unitDir, Name+".service")
	if f.unitNow, f.unitExists, err = readIfExists(unitPath); err != nil {
		return f, err
	}
	if _, err := os.Lstat(filepath.Join(sys.wantsDir, Name+".service")); err == nil {
		f.enabled = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return f, fmt.Errorf("is %s enabled: %w", Name, err)
	}

	for _, d := range outermost(t.WriteDirs) {
		hidden("the data directory", d)
		if d == t.ConfigPath || strings.HasPrefix(t.ConfigPath, d+"/") {
			problem("the config %s is inside %s, which the agent writes: it could rewrite its own configuration; keep store.dir and api.token_file elsewhere", t.ConfigPath, d)
		}
		if d != sys.stateDir && !strings.HasPrefix(d, sys.stateDir+"/") {
			readWrite = append(readWrite, d)
		}
		df := dirFact{path: d}
		st, err := os.Stat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return f, fmt.Errorf("data directory: %w", err)
		case !st.IsDir():
			problem("the data directory %s is not a directory", d)
		default:
			df.exists, df.perm = true, st.Mode().Perm()
			if s, ok := st.Sys().(*syscall.Stat_t); ok && f.userExists {
				df.owned = strconv.FormatUint(uint64(s.Uid), 10) == uid
			}
		}
		f.dirs = append(f.dirs, df)
	}
	for _, p := range t.ReadFiles {
		hidden("the file", p)
		st, err := os.Stat(p)
		if err != nil {
			problem("the agent reads %s: %v", p, err)
			continue
		}
		f.files = append(f.files, fileFact{path: p, readable: readableBy(st, f.userExists, uid, gid, userGIDs)})
	}

	f.unit, err = Unit{Exe: t.Exe, Args: Config(t.ConfigPath).Arguments, ReadWrite: readWrite}.Render()
	if err != nil {
		return f, err
	}
	return f, nil
}

// readableBy says whether the permission bits let the user read the file.
func readableBy(st fs.FileInfo, exists bool, uid, gid string, gids []string) bool {
	perm := st.Mode().Perm()
	if perm&0o004 != 0 {
		return true
	}
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok || !exists {
		return false
	}
	owner, group := strconv.FormatUint(uint64(s.Uid), 10), strconv.FormatUint(uint64(s.Gid), 10)
	if owner == uid {
		return perm&0o400 != 0
	}
	return perm&0o040 != 0 && (group == gid || slices.Contains(gids, group))
}

// outermost drops duplicates and directories inside another one of the list.
func outermost(dirs []string) []string {
	var out []string
	for _, d := range dirs {
		d = filepath.Clean(d)
		inside := false
		for _, o := range dirs {
			o = filepath.Clean(o)
			if o != d && strings.HasPrefix(d, o+"/") {
				inside = true
			}
		}
		if !inside && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

func readIfExists(path string) (string, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read %s: %w", path, err)
	}
	return string(b), true, nil
}

// Write prints the plan for a technician or a reviewer: the unit in full, then
// each change in order. It does not print the problems (the caller does, to
// the error stream).
func (p *Plan) Write(w io.Writer) {
	fmt.Fprintf(w, "kassa-agent install would write %s:\n\n%s\n", p.UnitPath, p.Unit)
	if len(p.Steps) == 0 {
		fmt.Fprintln(w, "It is installed exactly so: install has nothing to change.")
		return
	}
	fmt.Fprintln(w, "and make these changes, in order (as root):")
	for i, s := range p.Steps {
		fmt.Fprintf(w, "  %d. %s\n", i+1, s)
		if s.Argv == nil && s.Path != p.UnitPath {
			for _, l := range strings.Split(strings.TrimSuffix(s.Content, "\n"), "\n") {
				fmt.Fprintf(w, "       | %s\n", l)
			}
		}
	}
	for _, s := range p.Steps {
		if s.Path == p.UnitPath {
			fmt.Fprintf(w, "A running agent keeps its old unit until `%s restart`.\n", Name)
		}
	}
}

// ErrProblems is returned by Apply while the plan has problems.
var ErrProblems = errors.New("the installation has problems to fix first")

// Apply makes the plan's changes, printing each as it goes. It needs root and systemd.
func (p *Plan) Apply(ctx context.Context, out io.Writer) error {
	if len(p.Problems) > 0 {
		return fmt.Errorf("install %s: %w: %s", Name, ErrProblems, strings.Join(p.Problems, "; "))
	}
	if !isAdmin() {
		return fmt.Errorf("install %s: %w (%s)", Name, ErrNotAdmin, adminHint)
	}
	if st, err := os.Stat("/run/systemd/system"); err != nil || !st.IsDir() {
		return fmt.Errorf("install %s: systemd is not running here (no /run/systemd/system); install supports systemd on Linux", Name)
	}
	for _, s := range p.Steps {
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("install %s: %s: %w", Name, s, err)
		}
		fmt.Fprintf(out, "done: %s\n", s)
	}
	return nil
}

func (s Step) run(ctx context.Context) error {
	if s.Argv != nil {
		var buf bytes.Buffer
		cmd := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...)
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(buf.String()))
		}
		return nil
	}
	// Write beside it and rename, so a crash never leaves half a unit.
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
		return err
	}
	tmp := s.Path + ".new"
	if err := os.WriteFile(tmp, []byte(s.Content), s.Mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, s.Mode); err != nil {
		return err
	}
	return os.Rename(tmp, s.Path)
}
