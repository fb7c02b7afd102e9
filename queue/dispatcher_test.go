package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"
)

type recorder struct {
	mu   sync.Mutex
	seen []string // "key:id"
	at   map[uint64]time.Time
}

func (r *recorder) add(m Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, fmt.Sprintf("%s:%d", m.Key, m.ID))
	if r.at == nil {
		r.at = map[uint64]time.Time{}
	}
	r.at[m.ID] = time.Now()
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

func enqueue(t *testing.T, s *Store, kind, key string, payload string) uint64 {
	t.Helper()
	var id uint64
	if err := s.Update(context.Background(), func(tx *Tx) error {
		var err error
		id, err = tx.Enqueue(Message{Kind: kind, Key: key, Payload: []byte(payload)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

// runDispatcher starts d in the bubble and stops it at test end.
func runDispatcher(t *testing.T, d *Dispatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func synctestStore(t *testing.T) *Store {
	s, err := Open(filepath.Join(t.TempDir(), "kassa.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestEnqueueWakesDispatcherAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := synctestStore(t)
		d := NewDispatcher(s, DispatcherOptions{})
		rec := &recorder{}
		d.Register("confirm", func(ctx context.Context, m Message) error { rec.add(m); return nil })
		stop := runDispatcher(t, d)
		defer stop()
		<-d.Ready()
		synctest.Wait()
		start := time.Now()
		id := enqueue(t, s, "confirm", "p1", "x")
		synctest.Wait()
		if got := rec.list(); !slices.Equal(got, []string{fmt.Sprintf("p1:%d", id)}) {
			t.Fatalf("delivered %v", got)
		}
		if d := rec.at[id].Sub(start); d != 0 {
			t.Fatalf("fresh message waited %v of fake time", d)
		}
		st, _ := s.OutboxStats()
		if st.Pending != 0 || st.Parked != 0 {
			t.Fatalf("stats after delivery %+v", st)
		}
	})
}

func TestOrderPerKeyConcurrentAcrossKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := synctestStore(t)
		d := NewDispatcher(s, DispatcherOptions{BaseDelay: time.Second, MaxDelay: time.Minute, Workers: 4})
		rec := &recorder{}
		var mu sync.Mutex
		failsLeft := map[string]int{"A:confirm": 3}
		handler := func(ctx context.Context, m Message) error {
			mu.Lock()
			name := m.Key + ":" + m.Kind
			if failsLeft[name] > 0 {
				failsLeft[name]--
				mu.Unlock()
				return errors.New("provider 503")
			}
			mu.Unlock()
			rec.add(m)
			return nil
		}
		d.Register("confirm", handler)
		d.Register("fiscal", handler)
		a1 := enqueue(t, s, "confirm", "A", "")
		a2 := enqueue(t, s, "fiscal", "A", "")
		b1 := enqueue(t, s, "confirm", "B", "")
		b2 := enqueue(t, s, "fiscal", "B", "")
		a3 := enqueue(t, s, "fiscal", "A", "")
		stop := runDispatcher(t, d)
		defer stop()
		synctest.Wait()
		// B is not held up by A's failures.
		if got := rec.list(); !slices.Equal(got, []string{fmt.Sprintf("B:%d", b1), fmt.Sprintf("B:%d", b2)}) {
			t.Fatalf("before A recovers: %v", got)
		}
		m, _ := s.GetMessage(a1)
		if m.Attempts != 1 || m.LastError != "provider 503" {
			t.Fatalf("A1 after first failure: %+v", m)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		var aOrder []string
		for _, e := range rec.list() {
			if strings.HasPrefix(e, "A:") {
				aOrder = append(aOrder, e)
			}
		}
		want := []string{fmt.Sprintf("A:%d", a1), fmt.Sprintf("A:%d", a2), fmt.Sprintf("A:%d", a3)}
		if !slices.Equal(aOrder, want) {
			t.Fatalf("A delivered as %v, want %v", aOrder, want)
		}
		if st, _ := s.OutboxStats(); st.Pending != 0 {
			t.Fatalf("left pending: %+v", st)
		}
	})
}

func TestBackoffBounds(t *testing.T) {
	s := openTemp(t, Options{})
	d := NewDispatcher(s, DispatcherOptions{BaseDelay: 100 * time.Millisecond, MaxDelay: 5 * time.Second})
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i, w := range want {
		if got := d.Backoff(i + 1); got != w*time.Millisecond {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if got := d.Backoff(1000); got != 5*time.Second {
		t.Errorf("Backoff(1000) = %v (overflow?)", got)
	}
	// The default jitter stays within [0, bound] and actually varies.
	seen := map[time.Duration]bool{}
	for range 1000 {
		j := d.opts.Jitter(time.Second)
		if j < 0 || j > time.Second {
			t.Fatalf("jitter %v out of [0, 1s]", j)
		}
		seen[j] = true
	}
	if len(seen) < 100 {
		t.Fatalf("jitter barely random: %d distinct values", len(seen))
	}
}

// TestRetryDelaysFollowBackoff watches the real retry schedule of a failing
// message in fake time: each retry comes no later than its full-jitter bound.
func TestRetryDelaysFollowBackoff(t *testing.T) {
	for _, jit := range []string{"max", "zero", "random"} {
		t.Run(jit, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := synctestStore(t)
				opts := DispatcherOptions{BaseDelay: time.Second, MaxDelay: 20 * time.Second, MaxAge: -1}
				switch jit {
				case "max":
					opts.Jitter = func(max time.Duration) time.Duration { return max }
				case "zero":
					opts.Jitter = func(time.Duration) time.Duration { return 0 }
				}
				d := NewDispatcher(s, opts)
				var mu sync.Mutex
				var attempts []time.Time
				d.Register("k", func(ctx context.Context, m Message) error {
					mu.Lock()
					defer mu.Unlock()
					attempts = append(attempts, time.Now())
					if len(attempts) == 8 {
						return nil
					}
					return errors.New("down")
				})
				enqueue(t, s, "k", "p", "")
				stop := runDispatcher(t, d)
				defer stop()
				time.Sleep(10 * time.Minute)
				synctest.Wait()
				mu.Lock()
				defer mu.Unlock()
				if len(attempts) != 8 {
					t.Fatalf("%d attempts", len(attempts))
				}
				for i := 1; i < len(attempts); i++ {
					gap := attempts[i].Sub(attempts[i-1])
					bound := d.Backoff(i)
					if gap < 0 || gap > bound {
						t.Errorf("retry %d after %v, bound %v", i, gap, bound)
					}
					if jit == "max" && gap != bound {
						t.Errorf("retry %d after %v, want exactly %v", i, gap, bound)
					}
					if jit == "zero" && gap != 0 {
						t.Errorf("retry %d after %v, want 0", i, gap)
					}
				}
			})
		})
	}
}

func TestParkingAndTechnicianActions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := synctestStore(t)
		d := NewDispatcher(s, DispatcherOptions{BaseDelay: time.Second, MaxDelay: 4 * time.Second, MaxAttempts: 3, MaxAge: -1})
		rec := &recorder{}
		var mu sync.Mutex
		broken := map[string]bool{"A": true, "C": true}
		d.Register("k", func(ctx context.Context, m Message) error {
			mu.Lock()
			defer mu.Unlock()
			if broken[m.Key] {
				return fmt.Errorf("receiver rejects %s", m.Key)
			}
			rec.add(m)
			return nil
		})
		d.Register("perm", func(ctx context.Context, m Message) error {
			return Permanent(errors.New("400 invalid purchase"))
		})
		a1 := enqueue(t, s, "k", "A", "")
		a2 := enqueue(t, s, "k", "A", "")
		p1 := enqueue(t, s, "perm", "P", "")
		c1 := enqueue(t, s, "k", "C", "")
		stop := runDispatcher(t, d)
		defer stop()
		synctest.Wait()
		// The permanent failure parks at once.
		pm, _ := s.GetMessage(p1)
		if !pm.Parked || pm.Attempts != 1 || !strings.Contains(pm.LastError, "400 invalid purchase") {
			t.Fatalf("permanent failure not parked at once: %+v", pm)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		am, _ := s.GetMessage(a1)
		if !am.Parked || am.Attempts != 3 || am.LastError != "receiver rejects A" || am.ParkedReason == "" {
			t.Fatalf("A1 after 3 failures: %+v", am)
		}
		// A2 waits behind the parked A1: never attempted.
		if m2, _ := s.GetMessage(a2); m2.Attempts != 0 || m2.Parked {
			t.Fatalf("A2 should wait behind A1: %+v", m2)
		}
		st, _ := s.OutboxStats()
		if st.Parked != 3 || st.Pending != 1 || st.OldestPending.IsZero() {
			t.Fatalf("stats %+v", st)
		}
		parked, _ := s.ListOutbox(FilterParked, 0)
		if len(parked) != 3 || parked[0].ID != a1 || parked[1].ID != p1 || parked[2].ID != c1 {
			t.Fatalf("parked list %+v", parked)
		}
		pending, _ := s.ListOutbox(FilterPending, 0)
		if len(pending) != 1 || pending[0].ID != a2 {
			t.Fatalf("pending list %+v", pending)
		}
		all, _ := s.ListOutbox(FilterAll, 2)
		if len(all) != 2 {
			t.Fatalf("limit ignored: %d", len(all))
		}
		if err := s.DropParked(context.Background(), a2, "x"); !errors.Is(err, ErrNotParked) {
			t.Fatalf("dropping a pending message: %v", err)
		}
		if err := s.RetryParked(context.Background(), a2); !errors.Is(err, ErrNotParked) {
			t.Fatalf("retrying a pending message: %v", err)
		}
		if err := s.RetryParked(context.Background(), 9999); !errors.Is(err, ErrNotFound) {
			t.Fatalf("retrying a missing message: %v", err)
		}

		// Technician fixes A's receiver and retries A1: A1 then A2 go out.
		mu.Lock()
		broken["A"] = false
		mu.Unlock()
		if err := s.RetryParked(context.Background(), a1); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := rec.list(); !slices.Equal(got, []string{fmt.Sprintf("A:%d", a1), fmt.Sprintf("A:%d", a2)}) {
			t.Fatalf("after retry: %v", got)
		}
		// Retried but still failing: parked again after 3 more attempts.
		if err := s.RetryParked(context.Background(), c1); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if m, _ := s.GetMessage(c1); m.Parked || m.Attempts != 1 || m.RetriedAt.IsZero() {
			t.Fatalf("C1 after retry and one failure: %+v", m)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if m, _ := s.GetMessage(c1); !m.Parked || m.Attempts != 3 {
			t.Fatalf("C1 not parked again: %+v", m)
		}
		// Drop keeps a record.
		if err := s.DropParked(context.Background(), p1, "provider says purchase unknown; ticket 42"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetMessage(p1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("dropped message still in outbox: %v", err)
		}
		dropped, _ := s.ListOutbox(FilterDropped, 0)
		if len(dropped) != 1 || dropped[0].ID != p1 || !strings.Contains(dropped[0].ParkedReason, "ticket 42") {
			t.Fatalf("dropped list %+v", dropped)
		}
		st, _ = s.OutboxStats()
		if st.Parked != 1 || st.Pending != 0 || st.Dropped != 1 {
			t.Fatalf("final stats %+v", st)
		}
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDropParkedReleasesNextOfKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := synctestStore(t)
		d := NewDispatcher(s, DispatcherOptions{})
		rec := &recorder{}
		d.Register("bad", func(ctx context.Context, m Message) error { return Permanent(errors.New("no")) })
		d.Register("good", func(ctx context.Context, m Message) error { rec.add(m); return nil })
		b := enqueue(t, s, "bad", "K", "")
		g := enqueue(t, s, "good", "K", "")
		stop := runDispatcher(t, d)
		defer stop()
		synctest.Wait()
		if len(rec.list()) != 0 {
			t.Fatal("second message overtook the parked first")
		}
		if err := s.DropParked(context.Background(), b, "obsolete"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := rec.list(); !slices.Equal(got, []string{fmt.Sprintf("K:%d", g)}) {
			t.Fatalf("after drop: %v", got)
		}
	})
}

func TestMaxAgeParks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := synctestStore(t)
		d := NewDispatcher(s, DispatcherOptions{BaseDelay: time.Minute, MaxDelay: time.Hour, MaxAge: 3 * time.Hour})
		d.Register("k", func(ctx context.Context, m Message) error { return errors.New("still down") })
		id := enqueue(t, s, "k", "p", "")
		stop := runDispatcher(t, d)
		defer stop()
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if m, _ := s.GetMessage(id); m.Parked {
			t.Fatalf("parked before MaxAge: %+v", m)
		}
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		m, _ := s.GetMessage(id)
		if !m.Parked || !strings.Contains(m.ParkedReason, "still failing after") || m.LastError != "still down" {
			t.Fatalf("not parked after MaxAge: %+v", m)
		}
	})
}

func TestUnknownKindAndHandlerPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := synctestStore(t)
		d := NewDispatcher(s, DispatcherOptions{MaxAge: -1})
		d.Register("panics", func(ctx context.Context, m Message) error { panic("bug") })
		u := enqueue(t, s, "unknown", "a", "")
		p := enqueue(t, s, "panics", "b", "")
		stop := runDispatcher(t, d)
		defer stop()
		synctest.Wait()
		mu, _ := s.GetMessage(u)
		if mu.Attempts != 1 || !strings.Contains(mu.LastError, `no handler registered for kind "unknown"`) || mu.Parked {
			t.Fatalf("unknown kind: %+v", mu)
		}
		mp, _ := s.GetMessage(p)
		if mp.Attempts != 1 || !strings.Contains(mp.LastError, "handler panicked: bug") {
			t.Fatalf("panicking handler: %+v", mp)
		}
	})
}

func TestShutdownDoesNotCountAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := synctestStore(t)
		d := NewDispatcher(s, DispatcherOptions{})
		started := make(chan struct{})
		d.Register("slow", func(ctx context.Context, m Message) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
		id := enqueue(t, s, "slow", "a", "")
		stop := runDispatcher(t, d)
		<-started
		stop()
		m, err := s.GetMessage(id)
		if err != nil || m.Attempts != 0 || m.Parked {
			t.Fatalf("after shutdown mid-delivery: %+v %v", m, err)
		}
	})
}

func TestStateChangeAndMessageCommitTogether(t *testing.T) {
	s := openTemp(t, Options{})
	ctx := context.Background()
	err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.Put("payments", "p1", []byte(`{"state":"paid"}`)); err != nil {
			return err
		}
		if _, err := tx.Enqueue(Message{Kind: "confirm", Key: "p1"}); err != nil {
			return err
		}
		return errors.New("register not ready")
	})
	if err == nil {
		t.Fatal("expected the error back")
	}
	_ = s.View(func(rt *ReadTx) error {
		if _, err := rt.Get("payments", "p1"); !errors.Is(err, ErrNotFound) {
			t.Error("state written without its message committing")
		}
		return nil
	})
	if st, _ := s.OutboxStats(); st.Pending != 0 {
		t.Fatal("message written though its transaction failed")
	}
	var id uint64
	err = s.Update(ctx, func(tx *Tx) error {
		if err := tx.Put("payments", "p1", []byte(`{"state":"paid"}`)); err != nil {
			return err
		}
		var err error
		id, err = tx.Enqueue(Message{Kind: "confirm", Key: "p1", Payload: []byte("{}")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMessage(id)
	if err != nil || m.Kind != "confirm" || m.Key != "p1" || string(m.Payload) != "{}" || m.Created.IsZero() {
		t.Fatalf("stored message %+v %v", m, err)
	}
	for _, bad := range []Message{{Key: "p"}, {Kind: "k"}, {Kind: "k", Key: strings.Repeat("x", MaxKeyLen+1)}} {
		if err := s.Update(ctx, func(tx *Tx) error { _, err := tx.Enqueue(bad); return err }); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("Enqueue(%+v): %v", bad, err)
		}
	}
}

// rawMessage returns the stored bytes of message id.
func rawMessage(t *testing.T, s *Store, id uint64) (raw []byte, ok bool) {
	t.Helper()
	if err := s.db.View(func(btx *bolt.Tx) error {
		v := btx.Bucket(bOutMsg).Get(u64(id))
		raw, ok = clone(v), v != nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return raw, ok
}

// indexEntries lists the outbox index entries that name id.
func indexEntries(t *testing.T, s *Store, id uint64) (due, key int) {
	t.Helper()
	err := s.db.View(func(btx *bolt.Tx) error {
		_ = btx.Bucket(bOutDue).ForEach(func(k, _ []byte) error {
			if binary.BigEndian.Uint64(k[8:]) == id {
				due++
			}
			return nil
		})
		return btx.Bucket(bOutKey).ForEach(func(k, _ []byte) error {
			if binary.BigEndian.Uint64(k[len(k)-8:]) == id {
				key++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return due, key
}

// A mark-done of a damaged record fails with nothing changed, while the
// other mark-dones of the same transaction stand. (A damaged next message
// does not fail it: TestUndecodableMessageParkedOnce.)
func TestMarkDoneDamagedChangesNothing(t *testing.T) {
	s := openTemp(t, Options{})
	a1 := enqueue(t, s, "k", "A", "a1")
	enqueue(t, s, "k", "A", "a2")
	b1 := enqueue(t, s, "k", "B", "b1")
	b2 := enqueue(t, s, "k", "B", "b2")
	if err := s.db.Update(func(btx *bolt.Tx) error {
		return btx.Bucket(bOutMsg).Put(u64(a1), []byte{msgFormat, 0xff})
	}); err != nil {
		t.Fatal(err)
	}
	var errA, errB error
	if err := s.Update(context.Background(), func(tx *Tx) error {
		errA = tx.isolate(func() error { return tx.markDone(a1) })
		errB = tx.isolate(func() error { return tx.markDone(b1) })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if errA == nil || errors.Is(errA, ErrAborted) {
		t.Fatalf("mark-done of a damaged record: %v, want a plain error", errA)
	}
	if errB != nil {
		t.Fatalf("other mark-done: %v", errB)
	}
	if raw, ok := rawMessage(t, s, a1); !ok || !bytes.Equal(raw, []byte{msgFormat, 0xff}) {
		t.Fatalf("A1 after failed mark-done: %x %v", raw, ok)
	}
	if due, key := indexEntries(t, s, a1); due != 1 || key != 1 {
		t.Fatalf("A1 index entries: due %d, key %d; want 1, 1", due, key)
	}
	if _, err := s.GetMessage(b1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("B1 still there: %v", err)
	}
	if due, key := indexEntries(t, s, b1); due != 0 || key != 0 {
		t.Fatalf("B1 index entries left: due %d, key %d", due, key)
	}
	if due, key := indexEntries(t, s, b2); due != 1 || key != 1 {
		t.Fatalf("B2 not promoted: due %d, key %d", due, key)
	}
	// Marking a message done twice is a no-op.
	if err := s.Update(context.Background(), func(tx *Tx) error { return tx.markDone(b1) }); err != nil {
		t.Fatalf("second mark-done: %v", err)
	}
}

// A member returning ErrAborted takes its whole group down: nothing of
// any member is written, and every member is told.
func TestAbortedMemberDropsGroup(t *testing.T) {
	s := openTemp(t, Options{})
	ctx := context.Background()
	write := func(id string) func(*Tx) error {
		return func(tx *Tx) error { return tx.Put("payments", id, []byte("x")) }
	}
	batch := []*updateReq{
		{ctx: ctx, fn: write("p1"), done: make(chan struct{}, 1)},
		{ctx: ctx, fn: func(tx *Tx) error {
			if err := write("p2")(tx); err != nil {
				return err
			}
			return fmt.Errorf("%w: half done", ErrAborted)
		}, done: make(chan struct{}, 1)},
		{ctx: ctx, fn: write("p3"), done: make(chan struct{}, 1)},
	}
	s.commitBatch(batch)
	for i, r := range batch {
		if !errors.Is(r.err, ErrAborted) || r.ok {
			t.Errorf("member %d: ok %v err %v, want ErrAborted", i, r.ok, r.err)
		}
	}
	if err := s.View(func(rt *ReadTx) error {
		for _, id := range []string{"p1", "p2", "p3"} {
			if _, err := rt.Get("payments", id); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s written by an aborted group: %v", id, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
