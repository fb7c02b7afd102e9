package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "kassa.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestOpenReopenKeepsRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kassa.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Update(ctx, func(tx *Tx) error { return tx.Put("payments", "p1", []byte(`{"state":"paid"}`)) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx *Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Update after Close: %v, want ErrClosed", err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []byte
	if err := s.View(func(rt *ReadTx) error {
		var err error
		got, err = rt.Get("payments", "p1")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"state":"paid"}` {
		t.Fatalf("got %q", got)
	}
	if v, _ := s.SchemaVersionOf(); v != SchemaVersion {
		t.Fatalf("schema %d", v)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Size(); err != nil || n <= 0 {
		t.Fatalf("Size = %d, %v", n, err)
	}
	if s.Path() != path {
		t.Fatalf("Path = %q", s.Path())
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kassa.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = Open(path, Options{OpenTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	want := fmt.Sprintf("another kassa-agent is already running (store %s is locked)", path)
	if err.Error() != want {
		t.Fatalf("message %q, want %q", err.Error(), want)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("OpenTimeout not honoured")
	}
}

func TestBadOnCorruptOption(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "kassa.db"), Options{OnCorrupt: "ignore"}); err == nil {
		t.Fatal("accepted an unknown on_corrupt policy")
	}
}

func TestSchemaTooNewRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kassa.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(keySchema, u64(SchemaVersion+1)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(path, Options{}); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open: %v, want ErrSchemaTooNew", err)
	}
}

func TestMigrationFromEmptyVersion(t *testing.T) {
	// A file with no schema key (version 0) gets every migration.
	path := filepath.Join(t.TempDir(), "kassa.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("rec:payments")); return err }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersionOf(); v != SchemaVersion {
		t.Fatalf("schema %d after migration", v)
	}
	if err := s.Update(context.Background(), func(tx *Tx) error { _, err := tx.Enqueue(Message{Kind: "k", Key: "a"}); return err }); err != nil {
		t.Fatal(err)
	}
}

// holdLeader makes the next Update block inside the commit until release is
// closed, so that calls made meanwhile are grouped into one transaction.
func holdLeader(t *testing.T, s *Store) (release func(), done <-chan error) {
	entered := make(chan struct{})
	rel := make(chan struct{})
	ch := make(chan error, 1)
	go func() {
		ch <- s.Update(context.Background(), func(tx *Tx) error {
			close(entered)
			<-rel
			return tx.Put("x", "leader", []byte("1"))
		})
	}()
	<-entered
	return func() { close(rel) }, ch
}

func waitPending(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.gmu.Lock()
		got := len(s.pending)
		s.gmu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d updates queued", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGroupCommitIsolatesFailures(t *testing.T) {
	s := openTemp(t, Options{})
	ctx := context.Background()
	// Existing value that a failing member overwrites and must get back.
	if err := s.Update(ctx, func(tx *Tx) error { return tx.Put("x", "shared", []byte("orig")) }); err != nil {
		t.Fatal(err)
	}
	release, leaderDone := holdLeader(t, s)
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(ctx, func(tx *Tx) error {
				id := fmt.Sprintf("r%02d", i)
				if err := tx.Put("x", id, []byte("v")); err != nil {
					return err
				}
				if _, err := tx.Enqueue(Message{Kind: "k", Key: id}); err != nil {
					return err
				}
				switch i % 4 {
				case 1:
					if err := tx.Put("x", "shared", []byte("clobbered")); err != nil {
						return err
					}
					if err := tx.Delete("x", "leader"); err != nil {
						return err
					}
					return errors.New("refused")
				case 2:
					panic("boom")
				}
				return nil
			})
		})
	}
	waitPending(t, s, n)
	release()
	wg.Wait()
	if err := <-leaderDone; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		switch i % 4 {
		case 1:
			if err == nil || err.Error() != "refused" {
				t.Errorf("member %d: %v", i, err)
			}
		case 2:
			if err == nil || !strings.Contains(err.Error(), "panicked") {
				t.Errorf("member %d: %v", i, err)
			}
		default:
			if err != nil {
				t.Errorf("member %d: %v", i, err)
			}
		}
	}
	err := s.View(func(rt *ReadTx) error {
		for i := range n {
			_, err := rt.Get("x", fmt.Sprintf("r%02d", i))
			ok := i%4 == 0 || i%4 == 3
			if ok != (err == nil) {
				t.Errorf("record r%02d present=%v, want %v", i, err == nil, ok)
			}
		}
		if v, _ := rt.Get("x", "shared"); string(v) != "orig" {
			t.Errorf("shared = %q: a failed member's write leaked", v)
		}
		if _, err := rt.Get("x", "leader"); err != nil {
			t.Errorf("leader record: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s.OutboxStats()
	if st.Pending != n/2 {
		t.Fatalf("pending %d, want %d: failed members' messages leaked", st.Pending, n/2)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateContextAndTxLifetime(t *testing.T) {
	s := openTemp(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if err := s.Update(ctx, func(tx *Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("cancelled Update: err=%v ran=%v", err, ran)
	}
	var kept *Tx
	if err := s.Update(context.Background(), func(tx *Tx) error { kept = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := kept.Put("x", "late", nil); !errors.Is(err, ErrTxClosed) {
		t.Fatalf("Put on a finished Tx: %v", err)
	}
	var keptR *ReadTx
	_ = s.View(func(rt *ReadTx) error { keptR = rt; return nil })
	if _, err := keptR.Get("x", "a"); !errors.Is(err, ErrTxClosed) {
		t.Fatalf("Get on a finished ReadTx: %v", err)
	}
	if err := s.Update(context.Background(), func(tx *Tx) error { return tx.Put("", "a", nil) }); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("empty collection: %v", err)
	}
	if err := s.Update(context.Background(), func(tx *Tx) error { return tx.Put("x", "", nil) }); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("empty id: %v", err)
	}
}

func TestScan(t *testing.T) {
	s := openTemp(t, Options{})
	err := s.Update(context.Background(), func(tx *Tx) error {
		for i := 1; i <= 9; i++ {
			if err := tx.Put("payments", SortableID(uint64(i*10)), []byte{byte(i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	list := func(o ScanOptions) string {
		var ids []string
		if err := s.View(func(rt *ReadTx) error {
			return rt.Scan("payments", o, func(id string, v []byte) error {
				ids = append(ids, strings.TrimLeft(id, "0"))
				return nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		return strings.Join(ids, ",")
	}
	cases := []struct {
		o    ScanOptions
		want string
	}{
		{ScanOptions{}, "10,20,30,40,50,60,70,80,90"},
		{ScanOptions{Limit: 2}, "10,20"},
		{ScanOptions{From: SortableID(35)}, "40,50,60,70,80,90"},
		{ScanOptions{From: SortableID(40), Limit: 2}, "40,50"},
		{ScanOptions{After: SortableID(40), Limit: 2}, "50,60"},
		{ScanOptions{Reverse: true, Limit: 3}, "90,80,70"},
		{ScanOptions{Reverse: true, From: SortableID(40)}, "40,30,20,10"},
		{ScanOptions{Reverse: true, From: SortableID(45)}, "40,30,20,10"},
		{ScanOptions{Reverse: true, After: SortableID(40)}, "30,20,10"},
		{ScanOptions{Reverse: true, From: SortableID(999)}, "90,80,70,60,50,40,30,20,10"},
		{ScanOptions{From: SortableID(999)}, ""},
	}
	for _, c := range cases {
		if got := list(c.o); got != c.want {
			t.Errorf("%+v: got %s want %s", c.o, got, c.want)
		}
	}
	_ = s.View(func(rt *ReadTx) error {
		if n, _ := rt.Count("payments"); n != 9 {
			t.Errorf("Count = %d", n)
		}
		if _, err := rt.Get("payments", "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing: %v", err)
		}
		return nil
	})
}

// damage writes a store with some data, then damages the file.
func damage(t *testing.T, how string) string {
	path := filepath.Join(t.TempDir(), "kassa.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(context.Background(), func(tx *Tx) error {
		for i := range 2000 {
			if err := tx.Put("payments", SortableID(uint64(i)), []byte(strings.Repeat("x", 200))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	fi, _ := os.Stat(path)
	switch how {
	case "truncated":
		if err := os.Truncate(path, fi.Size()/3); err != nil {
			t.Fatal(err)
		}
	case "garbage":
		junk := make([]byte, fi.Size())
		for i := range junk {
			junk[i] = byte(i*7 + 13)
		}
		if err := os.WriteFile(path, junk, 0o600); err != nil {
			t.Fatal(err)
		}
	case "tiny":
		if err := os.Truncate(path, 100); err != nil {
			t.Fatal(err)
		}
	case "pages":
		// Valid meta pages, garbled data pages.
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		junk := make([]byte, fi.Size()-4*4096)
		for i := range junk {
			junk[i] = 0xA5
		}
		if _, err := f.WriteAt(junk, 4*4096); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return path
}

func TestDamagedStoreRefused(t *testing.T) {
	for _, how := range []string{"truncated", "garbage", "tiny", "pages"} {
		t.Run(how, func(t *testing.T) {
			path := damage(t, how)
			before, _ := os.ReadFile(path)
			_, err := Open(path, Options{})
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Open: %v, want *CorruptError", err)
			}
			if ce.Path != path || ce.Reason == "" || ce.MovedTo != "" {
				t.Fatalf("CorruptError %+v", ce)
			}
			after, _ := os.ReadFile(path)
			if string(before) != string(after) {
				t.Fatal("refuse policy changed the damaged file")
			}
			t.Log(ce)
		})
	}
}

func TestDamagedStoreMovedAside(t *testing.T) {
	for _, how := range []string{"truncated", "garbage"} {
		t.Run(how, func(t *testing.T) {
			path := damage(t, how)
			before, _ := os.ReadFile(path)
			s, err := Open(path, Options{OnCorrupt: CorruptMoveAside})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			rec := s.Recovered()
			if rec == nil || rec.MovedTo == "" || !strings.HasPrefix(filepath.Base(rec.MovedTo), "kassa.db.corrupt-") {
				t.Fatalf("Recovered = %+v", rec)
			}
			moved, err := os.ReadFile(rec.MovedTo)
			if err != nil || string(moved) != string(before) {
				t.Fatalf("damaged file not kept intact at %s: %v", rec.MovedTo, err)
			}
			_ = s.View(func(rt *ReadTx) error {
				if n, _ := rt.Count("payments"); n != 0 {
					t.Errorf("fresh store has %d payments", n)
				}
				return nil
			})
			if err := s.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHealthyStoreNotRecovered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kassa.db")
	for range 2 {
		s, err := Open(path, Options{OnCorrupt: CorruptMoveAside})
		if err != nil {
			t.Fatal(err)
		}
		if s.Recovered() != nil {
			t.Fatal("healthy store reported as recovered")
		}
		s.Close()
	}
}
