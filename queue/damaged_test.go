package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// logCounter is a slog handler that counts records and keeps the first few.
type logCounter struct {
	mu   sync.Mutex
	n    int
	kept []string
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logCounter) WithGroup(string) slog.Handler            { return h }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if len(h.kept) < 5 {
		line := r.Level.String() + " " + r.Message
		r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
		h.kept = append(h.kept, line)
	}
	return nil
}

func (h *logCounter) count() (int, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n, slices.Clone(h.kept)
}

// writeRaw puts val under key in bucket of the closed store file at path,
// with bbolt directly, as a damaged disk or a buggy writer would.
func writeRaw(t *testing.T, path string, bucket, key, val []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, val) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// An outbox record that does not decode is parked with its decode error and
// its bytes, logged once, listed; the messages behind it on its key and on
// other keys are delivered.
func TestUndecodableMessageParkedOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damaged int // which of K's three messages
		garbage func(good []byte) []byte
	}{
		{"head of its key, unknown format", 0, func([]byte) []byte { return []byte("\x07not an outbox record") }},
		{"behind a delivered message, truncated", 1, func(good []byte) []byte { return good[:len(good)/2] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kassa.db")
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			k := []uint64{enqueue(t, s, "k", "K", "k1"), enqueue(t, s, "k", "K", "k2"), enqueue(t, s, "k", "K", "k3")}
			l1 := enqueue(t, s, "k", "L", "l1")
			bad := k[tc.damaged]
			var good []byte
			if err := s.View(func(rt *ReadTx) error {
				good = clone(rt.btx.Bucket(bOutMsg).Get(u64(bad)))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			garbage := tc.garbage(good)
			writeRaw(t, path, bOutMsg, u64(bad), garbage)
			_, decodeErr := decodeMessage(garbage)
			if decodeErr == nil {
				t.Fatal("the garbage decodes")
			}

			logs := &logCounter{}
			s, err = Open(path, Options{Logger: slog.New(logs)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			// The listing works before the dispatcher has seen the record.
			all, err := s.ListOutbox(FilterAll, 0)
			if err != nil {
				t.Fatalf("listing with a damaged record: %v", err)
			}
			if len(all) != 4 {
				t.Fatalf("listed %d messages, want 4", len(all))
			}
			if m := all[tc.damaged]; m.ID != bad || !m.Damaged || !bytes.Equal(m.Raw, garbage) || m.LastError != decodeErr.Error() {
				t.Fatalf("damaged record listed as %+v", m)
			}
			if _, err := s.OutboxStats(); err != nil {
				t.Fatalf("stats with a damaged record: %v", err)
			}

			d := NewDispatcher(s, DispatcherOptions{})
			rec := &recorder{}
			d.Register("k", func(ctx context.Context, m Message) error { rec.add(m); return nil })
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			var want []string
			for _, id := range k {
				if id != bad {
					want = append(want, fmt.Sprintf("K:%d", id))
				}
			}
			want = append(want, fmt.Sprintf("L:%d", l1))
			deadline := time.Now().Add(5 * time.Second)
			for len(rec.list()) < len(want) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			// Long enough for a dispatcher spinning on the record to log
			// thousands of lines.
			time.Sleep(200 * time.Millisecond)
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			n, first := logs.count()
			if n != 1 || !strings.Contains(first[0], fmt.Sprintf("msg_id=%d", bad)) || !strings.HasPrefix(first[0], "ERROR") {
				t.Errorf("%d log lines, want 1 naming msg_id=%d; first: %q", n, bad, first)
			}
			got := rec.list()
			slices.Sort(got) // K before L; within K the ids are in enqueue order
			if !slices.Equal(got, want) {
				t.Fatalf("delivered %v, want %v", got, want)
			}

			parked, err := s.ListOutbox(FilterParked, 0)
			if err != nil {
				t.Fatalf("parked listing: %v", err)
			}
			if len(parked) != 1 {
				t.Fatalf("parked %+v", parked)
			}
			m := parked[0]
			if m.ID != bad || !m.Parked || !m.Damaged || m.Key != "K" || !bytes.Equal(m.Raw, garbage) ||
				!strings.Contains(m.ParkedReason, "undecodable") || m.LastError != decodeErr.Error() {
				t.Fatalf("parked damaged message %+v", m)
			}
			if st, err := s.OutboxStats(); err != nil || st.Parked != 1 || st.Pending != 0 {
				t.Fatalf("stats %+v %v", st, err)
			}
			if err := s.RetryParked(context.Background(), bad); !errors.Is(err, ErrDamagedMessage) {
				t.Fatalf("retrying a damaged message: %v, want ErrDamagedMessage", err)
			}
			if err := s.DropParked(context.Background(), bad, "record unreadable, ticket 7"); err != nil {
				t.Fatalf("dropping a damaged message: %v", err)
			}
			dropped, err := s.ListOutbox(FilterDropped, 0)
			if err != nil || len(dropped) != 1 || !bytes.Equal(dropped[0].Raw, garbage) || !strings.Contains(dropped[0].ParkedReason, "ticket 7") {
				t.Fatalf("dropped %+v %v", dropped, err)
			}
			if st, _ := s.OutboxStats(); st.Parked != 0 || st.Pending != 0 || st.Dropped != 1 {
				t.Fatalf("stats after drop %+v", st)
			}
			if err := s.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
