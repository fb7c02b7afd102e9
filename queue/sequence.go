package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Sequence hands out ids that are strictly increasing across restarts and
// crashes (e.g. Smart Pay's kassa_purchase_id) without an fsync per id.
//
// The store persists, per name, the end of the block reserved so far.
// Next returns ids from memory inside a reserved block; when half of the
// block is used, the next block is reserved in the background (one fsync),
// so Next normally never waits for the disk. After a crash or restart the
// sequence continues after the last reserved block: the unused rest of that
// block is skipped, never reused.
type Sequence struct {
	s     *Store
	name  string
	block uint64

	mu        sync.Mutex
	next      uint64 // next id to hand out
	limit     uint64 // ids < limit are durably reserved
	refilling chan struct{}
	refillErr error
}

// Sequence returns the named sequence, reserving its first block (one
// fsync) if this is the first call for name since Open. block is the
// number of ids reserved per fsync (0 means 1000); later calls for the same
// name return the same Sequence.
func (s *Store) Sequence(name string, block uint64) (*Sequence, error) {
	return s.SequenceFrom(name, block, 1)
}

// SequenceFrom is Sequence with a floor: the first id is at least floor.
// Passing e.g. the current unix time in milliseconds keeps ids unique even
// if the store is ever replaced by an empty one.
func (s *Store) SequenceFrom(name string, block, floor uint64) (*Sequence, error) {
	if name == "" || len(name) > maxCollection {
		return nil, fmt.Errorf("%w: sequence %q", ErrInvalidName, name)
	}
	if block == 0 {
		block = 1000
	}
	if floor == 0 {
		floor = 1
	}
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	if q, ok := s.seqs[name]; ok {
		return q, nil
	}
	q := &Sequence{s: s, name: name, block: block}
	var start uint64
	err := s.Update(context.Background(), func(tx *Tx) error {
		start = floor
		if raw := tx.btx.Bucket(bSeq).Get([]byte(name)); len(raw) == 8 {
			start = max(start, binary.BigEndian.Uint64(raw))
		}
		if start > ^uint64(0)-block {
			return fmt.Errorf("queue: sequence %q exhausted", name)
		}
		return tx.put(bSeq, []byte(name), u64(start+block))
	})
	if err != nil {
		return nil, fmt.Errorf("queue: reserving sequence %q: %w", name, err)
	}
	q.next, q.limit = start, start+block
	s.seqs[name] = q
	return q, nil
}

// Next returns the next id. It waits for the disk only if the reserved
// block ran out before the background reservation finished.
func (q *Sequence) Next(ctx context.Context) (uint64, error) {
	q.mu.Lock()
	for q.next >= q.limit {
		if q.refillErr != nil {
			err := q.refillErr
			q.refillErr = nil // let a later call try again
			q.mu.Unlock()
			return 0, err
		}
		wait := q.startRefill()
		q.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		q.mu.Lock()
	}
	v := q.next
	q.next++
	if q.limit-q.next <= q.block/2 {
		q.startRefill()
	}
	q.mu.Unlock()
	return v, nil
}

// startRefill reserves the block after limit in the background; q.mu held.
func (q *Sequence) startRefill() chan struct{} {
	if q.refilling != nil {
		return q.refilling
	}
	done := make(chan struct{})
	q.refilling = done
	target := q.limit + q.block
	go func() {
		err := q.s.Update(context.Background(), func(tx *Tx) error {
			if target < q.block {
				return errors.New("sequence exhausted")
			}
			return tx.put(bSeq, []byte(q.name), u64(target))
		})
		q.mu.Lock()
		if err != nil {
			q.refillErr = fmt.Errorf("queue: reserving ids for sequence %q: %w", q.name, err)
		} else {
			q.limit = target
		}
		q.refilling = nil
		q.mu.Unlock()
		close(done)
	}()
	return done
}
