package shtrih_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/fiscal/shtrih"
	"kassa-agent/fiscal/shtrihsim"
)

const markChildEnv = "KASSA_MARK_ADDR"

type markChildResult struct {
	Checks    []fiscal.MarkingResult
	Doc       fiscal.Document
	Rechecked bool
	Err       string
}

// TestKill9MarkChild is the child of TestKill9Marking. Step "check" checks and
// accepts the receipt's codes (the second left awaiting with
// KASSA_MARK_NOACCEPT), records the results, then prints (KASSA_MARK_PRINT) or
// waits to be killed. Step "finish" recovers and prints the receipt with the
// recorded results, checking the codes again if the register refuses them.
func TestKill9MarkChild(t *testing.T) {
	addr := os.Getenv(markChildEnv)
	if addr == "" {
		t.Skip("child process of TestKill9Marking")
	}
	ctx := context.Background()
	d := childDriver(t, "KASSA_MARK_JOURNAL", addr)
	out := os.Getenv("KASSA_MARK_OUT")
	write := func(res markChildResult) {
		b, _ := json.Marshal(res)
		if err := os.WriteFile(out+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(out+".tmp", out); err != nil {
			t.Fatal(err)
		}
	}
	rc := markedReceipt()
	id := os.Getenv("KASSA_MARK_ID")
	var res markChildResult
	if _, err := d.RecoverRegister(ctx); err != nil {
		t.Fatal(err)
	}
	switch os.Getenv("KASSA_MARK_STEP") {
	case "check":
		for i := 1; i <= 2; i++ {
			c, err := d.CheckMarking(ctx, fiscal.MarkingRequestFor(rc.Type, rc.Items[i]))
			if err != nil {
				t.Fatal(err)
			}
			if i == 1 || os.Getenv("KASSA_MARK_NOACCEPT") == "" {
				if err := d.AcceptMarking(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			res.Checks = append(res.Checks, c)
			rc.Items[i].MarkingResult = &res.Checks[i-1]
		}
		write(res)
		if os.Getenv("KASSA_MARK_PRINT") != "" {
			_, _ = d.PrintReceipt(ctx, id, rc) // killed while it runs
		}
		select {} // killed here
	case "finish":
		b, err := os.ReadFile(os.Getenv("KASSA_MARK_CHECKS"))
		if err != nil {
			t.Fatal(err)
		}
		var prev markChildResult
		if err := json.Unmarshal(b, &prev); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 2; i++ {
			rc.Items[i].MarkingResult = &prev.Checks[i-1]
		}
		res.Doc, err = d.PrintReceipt(ctx, id, rc)
		var fe *fiscal.Error
		if errors.As(err, &fe) && fe.Code == fiscal.CodeBadReceipt {
			res.Rechecked = true
			if err = d.ClearMarking(ctx); err == nil {
				for i := 1; i <= 2 && err == nil; i++ {
					var c fiscal.MarkingResult
					if c, err = d.CheckMarking(ctx, fiscal.MarkingRequestFor(rc.Type, rc.Items[i])); err == nil {
						err = d.AcceptMarking(ctx, c)
						rc.Items[i].MarkingResult = &c
					}
				}
			}
			if err == nil {
				res.Doc, err = d.PrintReceipt(ctx, id, rc)
			}
		}
		if err != nil {
			res.Err = err.Error()
		}
		write(res)
	}
}

// TestKill9Marking kills the agent (a child process) between the check of
// the codes and the receipt, and in the receipt's middle; a restarted agent
// prints the receipt exactly once, every marked line bound to an accepted
// check of its own code, checking the codes again where the FN no longer
// holds them.
func TestKill9Marking(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	r := newTCPRig(t, shtrihsim.Options{}, shtrih.Options{})
	dir := t.TempDir()
	jdir := filepath.Join(dir, "journal")
	hold := 5 * time.Second
	points := []struct {
		name      string
		noAccept  bool
		f         *shtrihsim.Fault
		rechecked bool
	}{
		{name: "both accepted, no receipt yet"},
		{name: "second awaiting the decision", noAccept: true, rechecked: true},
		{name: "in the bind of the second code", f: &shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNBindMarking, After: 1, Delay: hold}, rechecked: true},
		{name: "in the second line", f: &shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNOperation, After: 2, Delay: hold}, rechecked: true},
		{name: "closing the receipt", f: &shtrihsim.Fault{Kind: shtrihsim.DelayReply, Command: shtrih.CmdFNCloseReceipt, Delay: hold}},
	}
	for n, pt := range points {
		id := fmt.Sprintf("kill-mark-%d", n)
		checks := filepath.Join(dir, id+"-checks.json")
		final := filepath.Join(dir, id+"-final.json")
		before := len(receipts(r.sim.Documents()))
		child := func(step, out string) *exec.Cmd {
			c := exec.Command(os.Args[0], "-test.run=^TestKill9MarkChild$", "-test.count=1")
			c.Env = append(os.Environ(), markChildEnv+"="+r.addr, "KASSA_MARK_JOURNAL="+jdir, "KASSA_MARK_ID="+id,
				"KASSA_MARK_STEP="+step, "KASSA_MARK_OUT="+out, "KASSA_MARK_CHECKS="+checks)
			if pt.noAccept {
				c.Env = append(c.Env, "KASSA_MARK_NOACCEPT=1")
			}
			if pt.f != nil {
				c.Env = append(c.Env, "KASSA_MARK_PRINT=1")
			}
			return c
		}
		fired := len(r.sim.Fired())
		if pt.f != nil {
			r.sim.Inject(*pt.f)
		}
		c := child("check", checks)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		ready := func() bool {
			if pt.f != nil {
				return len(r.sim.Fired()) > fired
			}
			_, err := os.Stat(checks)
			return err == nil
		}
		for !ready() && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		if !ready() {
			_ = c.Process.Kill()
			_ = c.Wait()
			t.Fatalf("%s: the child never got there", pt.name)
		}
		time.Sleep(20 * time.Millisecond)
		if err := c.Process.Signal(os.Kill); err != nil {
			t.Fatal(err)
		}
		_ = c.Wait()
		r.sim.ClearFaults()
		if out, err := child("finish", final).CombinedOutput(); err != nil {
			t.Fatalf("%s: restarted child: %v\n%s", pt.name, err, out)
		}
		b, err := os.ReadFile(final)
		if err != nil {
			t.Fatal(err)
		}
		var res markChildResult
		if err := json.Unmarshal(b, &res); err != nil || res.Err != "" {
			t.Fatalf("%s: child result %s %v", pt.name, b, err)
		}
		if res.Rechecked != pt.rechecked {
			t.Errorf("%s: rechecked %v, want %v", pt.name, res.Rechecked, pt.rechecked)
		}
		got := receipts(r.sim.Documents())
		if len(got) != before+1 {
			t.Fatalf("%s: %d new receipts, want 1", pt.name, len(got)-before)
		}
		last := got[len(got)-1]
		if last.FD != res.Doc.FD || last.FP != res.Doc.FP {
			t.Fatalf("%s: FN %+v, child %+v", pt.name, last, res.Doc)
		}
		if it := last.Items; it[1].Marking != codeMilk || it[2].Marking != codeCheese || it[1].MarkingCheck != 0x0F || it[2].MarkingCheck != 0x0F {
			t.Fatalf("%s: lines %+v", pt.name, it)
		}
		if st, err := r.drv.MarkingStatus(context.Background()); err != nil || st.Saved != 0 || st.Awaiting() {
			t.Fatalf("%s: FN left with %+v %v", pt.name, st, err)
		}
	}
}
