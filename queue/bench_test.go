package queue

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var benchPayload = []byte(`{"purchase_id":"sp-000123456","kassa_purchase_id":"00000000000000001234","amount":125000,"currency":"UZS","status":"paid","fiscal":{"fn":"9999078900001234","fd":1234,"fp":"3820718402"}}`)

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// BenchmarkEnqueueLatency measures, side by side in one run, the latency of
// a durable Enqueue (Store.Update with one message) and of a bare bbolt
// Update writing the same bytes (the message record, its key index entry
// and its due entry) to another file in the same directory. The two are
// interleaved so disk conditions hit both alike.
func BenchmarkEnqueueLatency(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(filepath.Join(dir, "kassa.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	db, err := bolt.Open(filepath.Join(dir, "bare.db"), 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	_ = db.Update(func(tx *bolt.Tx) error {
		for _, n := range [][]byte{bOutMsg, bOutKey, bOutDue} {
			if _, err := tx.CreateBucketIfNotExists(n); err != nil {
				return err
			}
		}
		return nil
	})
	ctx := context.Background()
	ours := make([]time.Duration, 0, b.N)
	bare := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		key := fmt.Sprintf("purchase-%d", i)
		t0 := time.Now()
		err := s.Update(ctx, func(tx *Tx) error {
			_, err := tx.Enqueue(Message{Kind: "smartpay.confirm", Key: key, Payload: benchPayload})
			return err
		})
		t1 := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			msgs := tx.Bucket(bOutMsg)
			id, _ := msgs.NextSequence()
			now := time.Now()
			m := Message{ID: id, Kind: "smartpay.confirm", Key: key, Payload: benchPayload, Created: now, NextAttempt: now}
			if err := msgs.Put(u64(id), encodeMessage(&m)); err != nil {
				return err
			}
			if err := tx.Bucket(bOutKey).Put(keyIndexKey(key, id), nil); err != nil {
				return err
			}
			return tx.Bucket(bOutDue).Put(dueKey(now, id), nil)
		})
		t2 := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		ours = append(ours, t1.Sub(t0))
		bare = append(bare, t2.Sub(t1))
	}
	b.StopTimer()
	mo, mb := median(ours), median(bare)
	b.ReportMetric(float64(mo.Nanoseconds()), "enqueue-median-ns")
	b.ReportMetric(float64(mb.Nanoseconds()), "bare-bbolt-median-ns")
	b.ReportMetric(float64(mo)/float64(mb), "ratio")
}

// BenchmarkEnqueueThroughput measures durable enqueues per second with one
// producer and with 64 concurrent producers in the same run; "speedup" is
// their ratio, the gain from group commit (one fsync serves many callers).
func BenchmarkEnqueueThroughput(b *testing.B) {
	ctx := context.Background()
	rate := func(producers int) float64 {
		s, err := Open(filepath.Join(b.TempDir(), "kassa.db"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		total := max(b.N, 64)
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for p := range producers {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > int64(total) {
						return
					}
					err := s.Update(ctx, func(tx *Tx) error {
						_, err := tx.Enqueue(Message{Kind: "smartpay.confirm", Key: fmt.Sprintf("p%d-%d", p, i), Payload: benchPayload})
						return err
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return float64(total) / time.Since(start).Seconds()
	}
	b.ResetTimer()
	r1 := rate(1)
	r64 := rate(64)
	b.StopTimer()
	b.ReportMetric(r1, "msgs/s-1-producer")
	b.ReportMetric(r64, "msgs/s-64-producers")
	b.ReportMetric(r64/r1, "speedup")
}

// BenchmarkSequenceNext: ids from a reserved block cost no fsync.
func BenchmarkSequenceNext(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "kassa.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	q, err := s.Sequence("kassa_purchase_id", 1000)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := q.Next(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// fillBacklog fills a new store at path with n pending messages over
// 10 000 keys, 2 000 to a transaction.
func fillBacklog(b *testing.B, path string, n int) {
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for done := 0; done < n; {
		err := s.Update(context.Background(), func(tx *Tx) error {
			for i := 0; i < 2000 && done < n; i++ {
				key := fmt.Sprintf("purchase-%05d", done%10_000)
				if _, err := tx.Enqueue(Message{Kind: "smartpay.confirm", Key: key, Payload: benchPayload}); err != nil {
					return err
				}
				done++
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarkDone measures the store's share of draining a backlog: from
// 100 000 pending messages (10 000 keys x 10) it takes the due messages 256
// at a time, as the dispatcher's committer does, and marks them done in one
// durable Update each. ns/op is per message; pages-written/commit is what
// each commit wrote.
func BenchmarkMarkDone(b *testing.B) {
	path := filepath.Join(b.TempDir(), "kassa.db")
	fillBacklog(b, path, 100_000)
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	d := NewDispatcher(s, DispatcherOptions{})
	ctx := context.Background()
	before := s.db.Stats()
	commits := 0
	b.ReportAllocs()
	b.ResetTimer()
	waits := map[uint64]time.Duration{}
	for done := 0; done < b.N; {
		msgs, _, _, err := d.scan(s.now(), d.clock.Mono(), min(256, b.N-done), nil, waits)
		if err != nil {
			b.Fatal(err)
		}
		if len(msgs) == 0 {
			b.Fatalf("backlog ran dry after %d messages; use -benchtime ≤ 100000x", done)
		}
		err = s.Update(ctx, func(tx *Tx) error {
			for _, m := range msgs {
				if err := tx.isolate(func() error { return tx.markDone(m.id) }); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		done += len(msgs)
		commits++
	}
	b.StopTimer()
	after := s.db.Stats()
	st := after.Sub(&before)
	b.ReportMetric(float64(st.TxStats.GetWrite())/float64(commits), "pages-written/commit")
	b.ReportMetric(float64(b.N)/float64(commits), "msgs/commit")
}
