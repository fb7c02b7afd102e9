package queue

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ErrAborted is returned to the members of a grouped commit when the whole
// transaction had to be rolled back: the undo of another member's failed
// function failed, or a function returned an error wrapping ErrAborted
// because it could not leave the transaction consistent. Nothing of the
// group was written. It does not happen in practice (bbolt refuses writes
// only for bad keys or a closed transaction), but it is reported rather
// than hidden.
var ErrAborted = errors.New("queue: grouped commit aborted, nothing written")

type updateReq struct {
	ctx  context.Context
	fn   func(*Tx) error
	err  error
	ok   bool // fn succeeded, its writes are in the transaction
	lead bool // woken to lead the next group
	done chan struct{}
}

// Update runs fn in a read-write transaction and returns once the
// transaction is durable on disk (fsync), or with the error that prevented
// it.
//
// Commits are grouped: callers arriving while a commit is in flight are
// committed together in the next transaction, with one fsync. A caller that
// finds no commit in flight commits at once on its own goroutine, with no
// added delay.
//
// fn runs exactly once and is never retried. Members of a group are
// isolated: each fn's writes are undone if it returns an error (or panics),
// so one member's failure never affects another. If the commit itself fails
// (disk full, I/O error) every member of the group gets that error and
// nothing of the group was written. fn must not keep the Tx, nor call Update
// or View (it would deadlock); it should be short, since the group waits
// for it.
//
// ctx is checked until fn starts; once fn has run, Update waits for the
// commit regardless, so a nil result always means durable.
func (s *Store) Update(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &updateReq{ctx: ctx, fn: fn, done: make(chan struct{}, 1)}
	s.gmu.Lock()
	if s.closed {
		s.gmu.Unlock()
		return ErrClosed
	}
	s.pending = append(s.pending, r)
	if s.leading {
		s.gmu.Unlock()
		<-r.done
		if !r.lead {
			return r.err
		}
	} else {
		s.leading = true
		s.gmu.Unlock()
	}
	s.lead(r)
	return r.err
}

// lead commits everything pending (including self), then hands leadership
// to the first caller that arrived meanwhile, so no caller leads for long.
func (s *Store) lead(self *updateReq) {
	s.gmu.Lock()
	batch := s.pending
	s.pending = nil
	s.gmu.Unlock()

	s.commitBatch(batch)

	s.gmu.Lock()
	if len(s.pending) > 0 {
		next := s.pending[0]
		next.lead = true
		next.done <- struct{}{}
	} else {
		s.leading = false
		s.idle.Broadcast()
	}
	s.gmu.Unlock()
	for _, r := range batch {
		if r != self {
			r.done <- struct{}{}
		}
	}
}

func (s *Store) commitBatch(batch []*updateReq) {
	tx, err := s.db.Begin(true)
	if err != nil {
		for _, r := range batch {
			r.err = fmt.Errorf("queue: begin: %w", err)
		}
		return
	}
	ran, wake := 0, false
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			continue
		}
		t := &Tx{reader: reader{btx: tx}, s: s}
		err := runFn(r.fn, t)
		t.closed = true
		if err != nil {
			r.err = err
			abort := err
			if !errors.Is(err, ErrAborted) {
				abort = t.rollbackWrites()
				if abort != nil {
					abort = fmt.Errorf("%w: undo failed: %v", ErrAborted, abort)
				}
			}
			if abort != nil {
				_ = tx.Rollback()
				// Every member is told: those that ran, and those that
				// never will (a nil error would claim them durable).
				for _, o := range batch {
					if o.ok || o.err == nil {
						o.ok = false
						o.err = abort
					}
				}
				s.log.Error("grouped commit aborted, nothing of it written", "err", abort)
				return
			}
			continue
		}
		r.ok = true
		ran++
		wake = wake || t.enqueued
	}
	if ran == 0 {
		_ = tx.Rollback()
		return
	}
	if err := tx.Commit(); err != nil {
		for _, r := range batch {
			if r.ok {
				r.ok = false
				r.err = fmt.Errorf("queue: commit: %w", err)
			}
		}
		return
	}
	if wake {
		s.signal()
	}
}

func runFn(fn func(*Tx) error, t *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("queue: update function panicked: %v", p)
		}
	}()
	return fn(t)
}

// signal wakes the dispatcher without blocking.
func (s *Store) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// View runs fn in a read-only transaction that sees a consistent snapshot.
// Values passed to ForEach/Scan callbacks are valid only during the call;
// Get returns a copy. Keep read transactions short.
func (s *Store) View(fn func(*ReadTx) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		rt := &ReadTx{reader: reader{btx: tx}}
		defer func() { rt.closed = true }()
		return fn(rt)
	})
}

// ReadTx is a read-only view of the store.
type ReadTx struct {
	reader
}

// Tx is a read-write transaction inside Update. Reads see the writes made
// earlier in the same function.
type Tx struct {
	reader
	s        *Store
	undo     []undoEntry
	enqueued bool
	oc       *outboxCursors // see markDone
}

type undoEntry struct {
	bucket  []byte
	key     []byte
	old     []byte
	existed bool
}

// put writes key=val into bucket, remembering the old value for undo.
// bbolt wants keys and values to stay untouched until commit, so both are
// copied.
func (t *Tx) put(bucket []byte, key, val []byte) error {
	b, err := t.bucketForWrite(bucket)
	if err != nil {
		return err
	}
	t.remember(b, bucket, key)
	return b.Put(clone(key), clone(val))
}

func (t *Tx) del(bucket []byte, key []byte) error {
	if t.closed {
		return ErrTxClosed
	}
	b := t.btx.Bucket(bucket)
	if b == nil {
		return nil
	}
	// One seek serves the existence check, the undo copy and the delete.
	c := b.Cursor()
	k, old := c.Seek(key)
	if k == nil || string(k) != string(key) {
		return nil
	}
	t.undo = append(t.undo, undoEntry{bucket: bucket, key: clone(key), old: clone(old), existed: true})
	return c.Delete()
}

func (t *Tx) remember(b *bolt.Bucket, bucket, key []byte) {
	old := b.Get(key)
	t.undo = append(t.undo, undoEntry{bucket: bucket, key: clone(key), old: clone(old), existed: old != nil})
}

func (t *Tx) bucketForWrite(name []byte) (*bolt.Bucket, error) {
	if t.closed {
		return nil, ErrTxClosed
	}
	b := t.btx.Bucket(name)
	if b == nil {
		// A bucket created by a function that then fails stays, empty: harmless.
		var err error
		if b, err = t.btx.CreateBucket(name); err != nil {
			return nil, err
		}
	}
	if appendMostly(name) {
		b.FillPercent = 0.9
	}
	return b, nil
}

// appendMostly buckets get keys in (nearly) increasing order; filling their
// pages to 90% instead of bbolt's default 50% halves the file and so the
// memory a large backlog maps.
func appendMostly(name []byte) bool {
	switch string(name) {
	case string(bOutMsg), string(bOutDue), string(bOutDropped), string(bIdemTime):
		return true
	}
	return false
}

// rollbackWrites undoes this function's writes, newest first.
func (t *Tx) rollbackWrites() error {
	if err := t.rollbackTo(0); err != nil {
		return err
	}
	t.enqueued = false
	return nil
}

// isolate runs fn so that, if it fails, only fn's writes are undone and the
// rest of the transaction stands. It lets one Update carry many independent
// small changes (the dispatcher's mark-dones) with the same per-change
// isolation as separate Updates, at the cost of one transaction. A failed
// undo is returned wrapped in ErrAborted; the caller must then fail the
// whole Update.
func (t *Tx) isolate(fn func() error) error {
	mark := len(t.undo)
	err := runFn(func(*Tx) error { return fn() }, t)
	if err != nil {
		if uerr := t.rollbackTo(mark); uerr != nil {
			return fmt.Errorf("%w: undo failed: %v", ErrAborted, uerr)
		}
	}
	return err
}

// rollbackTo undoes the writes remembered after undo[mark], newest first.
func (t *Tx) rollbackTo(mark int) error {
	for i := len(t.undo) - 1; i >= mark; i-- {
		u := t.undo[i]
		b := t.btx.Bucket(u.bucket)
		if b == nil {
			return fmt.Errorf("bucket %q vanished", u.bucket)
		}
		var err error
		if u.existed {
			err = b.Put(u.key, u.old)
		} else {
			err = b.Delete(u.key)
		}
		if err != nil {
			return err
		}
	}
	t.undo = t.undo[:mark]
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	c := make([]byte, len(b))
	copy(c, b)
	return c
}
