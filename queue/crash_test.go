//go:build unix

package queue

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash test runs a child process (this test binary, re-executed) that
// enqueues messages and delivers them to a loopback HTTP receiver, and kills
// it with SIGKILL at random moments. After every kill the parent opens the
// store (which runs the start-up damage check) and runs bbolt's consistency
// check. At the end a last child drains the outbox, and the parent checks:
// every message acknowledged to an enqueuer was delivered, order per key
// held, and every duplicate delivery straddles a kill. Sequence ids printed
// by the children must be strictly increasing across all restarts.
//
// KASSA_CRASH_ITERATIONS sets the number of kills (default 50).

const (
	envCrashChild = "KASSA_QUEUE_CRASH_CHILD"
	envCrashDB    = "KASSA_QUEUE_CRASH_DB"
	envCrashURL   = "KASSA_QUEUE_CRASH_URL"
	envCrashEpoch = "KASSA_QUEUE_CRASH_EPOCH"
)

type delivery struct {
	id    uint64
	key   string
	epoch int
}

func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	iterations := 50
	if v := os.Getenv("KASSA_CRASH_ITERATIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("KASSA_CRASH_ITERATIONS=%q", v)
		}
		iterations = n
	}

	var mu sync.Mutex
	var deliveries []delivery
	rejected := 0
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseUint(r.Header.Get("X-Msg-Id"), 10, 64)
		epoch, _ := strconv.Atoi(r.Header.Get("X-Epoch"))
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		// Some failures, so retries and backoff are part of what crashes.
		if rand.IntN(20) == 0 {
			rejected++
			mu.Unlock()
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		deliveries = append(deliveries, delivery{id: id, key: r.Header.Get("X-Key"), epoch: epoch})
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer recv.Close()

	path := filepath.Join(t.TempDir(), "kassa.db")
	acked := map[uint64]string{}
	var seqs []uint64
	start := time.Now()

	run := func(epoch int, mode string, kill bool) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), envCrashChild+"="+mode, envCrashDB+"="+path, envCrashURL+"="+recv.URL, envCrashEpoch+"="+strconv.Itoa(epoch))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{})
		lines := make(chan struct{})
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			readyClosed := false
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				switch {
				case len(f) == 1 && f[0] == "READY" && !readyClosed:
					readyClosed = true
					close(ready)
				case len(f) == 3 && f[0] == "A":
					id, _ := strconv.ParseUint(f[1], 10, 64)
					acked[id] = f[2]
				case len(f) == 2 && f[0] == "S":
					v, _ := strconv.ParseUint(f[1], 10, 64)
					seqs = append(seqs, v)
				}
			}
			if !readyClosed {
				close(ready)
			}
		}()
		<-ready
		if kill {
			time.Sleep(time.Duration(rand.IntN(60)) * time.Millisecond)
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
		<-lines
		err = cmd.Wait()
		if kill {
			if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("epoch %d: child ended by itself (%v) before the kill:\n%s", epoch, err, stderr.String())
			}
		} else if err != nil {
			t.Fatalf("epoch %d (%s): %v\n%s", epoch, mode, err, stderr.String())
		}
	}

	for epoch := 1; epoch <= iterations; epoch++ {
		run(epoch, "work", true)
		// Open runs the damage check; Check runs bbolt's consistency check.
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("after kill %d: %v", epoch, err)
		}
		if err := s.Check(); err != nil {
			t.Fatalf("after kill %d: %v", epoch, err)
		}
		s.Close()
	}
	run(iterations+1, "drain", false)

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.OutboxStats(); st.Pending != 0 || st.Parked != 0 {
		t.Fatalf("outbox not empty after drain: %+v", st)
	}

	mu.Lock()
	defer mu.Unlock()
	delivered := map[uint64]bool{}
	last := map[string]delivery{}
	dups := 0
	for _, d := range deliveries {
		prev, seen := last[d.key]
		switch {
		case seen && d.id < prev.id:
			t.Fatalf("order broken for key %s: message %d delivered after %d", d.key, d.id, prev.id)
		case seen && d.id == prev.id:
			if d.epoch == prev.epoch {
				t.Fatalf("message %d delivered twice within one run (epoch %d): duplicate without a crash", d.id, d.epoch)
			}
			dups++
		}
		if delivered[d.id] && (!seen || d.id != prev.id) {
			t.Fatalf("message %d delivered again out of turn", d.id)
		}
		last[d.key] = d
		delivered[d.id] = true
	}
	lost := 0
	for id := range acked {
		if !delivered[id] {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged message %d (key %s) never delivered", id, acked[id])
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged messages lost", lost, len(acked))
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("sequence repeated or went back across restarts: %d after %d", seqs[i], seqs[i-1])
		}
	}
	if len(acked) == 0 || len(seqs) == 0 {
		t.Fatal("children acknowledged nothing: the test tested nothing")
	}
	t.Logf("%d kills in %v: %d messages acknowledged, %d delivered (%d distinct), %d duplicates (crash between delivery and mark-done), %d rejections retried, %d sequence ids",
		iterations, time.Since(start).Round(time.Millisecond), len(acked), len(deliveries), len(delivered), dups, rejected, len(seqs))
}

// TestCrashChild is the child side of TestCrashKill9.
func TestCrashChild(t *testing.T) {
	mode := os.Getenv(envCrashChild)
	if mode == "" {
		t.Skip("child process of TestCrashKill9")
	}
	if err := crashChild(mode); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

func crashChild(mode string) error {
	path, url, epoch := os.Getenv(envCrashDB), os.Getenv(envCrashURL), os.Getenv(envCrashEpoch)
	s, err := Open(path, Options{})
	if err != nil {
		return err
	}
	if err := s.Check(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// One write call per line: a line reaches the pipe whole or not at all.
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		_, _ = os.Stdout.WriteString(fmt.Sprintf(format, args...) + "\n")
		outMu.Unlock()
	}

	client := &http.Client{Timeout: 10 * time.Second}
	d := NewDispatcher(s, DispatcherOptions{BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond, MaxAge: -1, Workers: 4})
	d.Register("deliver", func(ctx context.Context, m Message) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(m.Payload))
		if err != nil {
			return Permanent(err)
		}
		req.Header.Set("X-Msg-Id", strconv.FormatUint(m.ID, 10))
		req.Header.Set("X-Key", m.Key)
		req.Header.Set("X-Epoch", epoch)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("receiver: %s", resp.Status)
		}
		return nil
	})
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	<-d.Ready()

	if mode == "drain" {
		for {
			st, err := s.OutboxStats()
			if err != nil {
				return err
			}
			if st.Parked > 0 {
				return fmt.Errorf("messages parked: %+v", st)
			}
			if st.Pending == 0 {
				cancel()
				if err := <-runErr; err != nil {
					return err
				}
				return s.Close()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	seq, err := s.Sequence("crash", 16)
	if err != nil {
		return err
	}
	say("READY")
	go func() {
		for {
			v, err := seq.Next(ctx)
			if err != nil {
				return
			}
			say("S %d", v)
			time.Sleep(500 * time.Microsecond)
		}
	}()
	for p := range 4 {
		go func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("k%d", rand.IntN(8))
				var id uint64
				err := s.Update(ctx, func(tx *Tx) error {
					var err error
					if err = tx.Put("acks", fmt.Sprintf("%s-%d-%d", epoch, p, i), []byte(key)); err != nil {
						return err
					}
					id, err = tx.Enqueue(Message{Kind: "deliver", Key: key, Payload: []byte(fmt.Sprintf(`{"epoch":%s,"p":%d,"i":%d}`, epoch, p, i))})
					return err
				})
				if err != nil {
					say("E %v", err)
					return
				}
				say("A %d %s", id, key)
				time.Sleep(3 * time.Millisecond)
			}
		}()
	}
	select {} // until killed
}
