package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Idempotency keys: the POS sends an Idempotency-Key on every creating
// call. The store keeps key -> (hash of the request, resource id, stored
// response) for at least MinIdempotencyRetention, then a sweep prunes it.

// MinIdempotencyRetention is the shortest time a key is kept.
const MinIdempotencyRetention = 72 * time.Hour

// MaxIdempotencyKeyLen is the longest key accepted.
const MaxIdempotencyKeyLen = 255

var (
	// ErrIdempotencyMismatch: the key was used before with a different request.
	ErrIdempotencyMismatch = errors.New("queue: idempotency key reused with a different request")
	// ErrInvalidIdempotencyKey: empty or longer than MaxIdempotencyKeyLen.
	ErrInvalidIdempotencyKey = errors.New("queue: invalid idempotency key")
)

// IdempotencyRecord is what is remembered for one key.
type IdempotencyRecord struct {
	RequestHash []byte    `json:"h"` // e.g. SHA-256 of method, path and body
	ResourceID  string    `json:"r"` // the payment/receipt the call created
	Status      int       `json:"s"` // HTTP status of the stored response
	Body        []byte    `json:"b"` // stored response body
	Created     time.Time `json:"c"` // set by PutIdempotency when zero
}

func validIdemKey(key string) error {
	if key == "" || len(key) > MaxIdempotencyKeyLen {
		return fmt.Errorf("%w: %d bytes", ErrInvalidIdempotencyKey, len(key))
	}
	return nil
}

func idemTimeKey(created time.Time, key string) []byte {
	b := make([]byte, 8, 8+len(key))
	binary.BigEndian.PutUint64(b, timeKey(created))
	return append(b, key...)
}

func decodeIdem(raw []byte) (IdempotencyRecord, error) {
	var r IdempotencyRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fmt.Errorf("queue: damaged idempotency record: %w", err)
	}
	return r, nil
}

// GetIdempotency returns the record for key, or ErrNotFound.
func (r *reader) GetIdempotency(key string) (IdempotencyRecord, error) {
	if r.closed {
		return IdempotencyRecord{}, ErrTxClosed
	}
	if err := validIdemKey(key); err != nil {
		return IdempotencyRecord{}, err
	}
	raw := r.btx.Bucket(bIdem).Get([]byte(key))
	if raw == nil {
		return IdempotencyRecord{}, ErrNotFound
	}
	return decodeIdem(raw)
}

// CheckIdempotency is the usual first step of a creating call:
//   - key unknown: (nil, nil), go ahead and create;
//   - same request hash: (record, nil), answer with the stored response
//     (or the resource's current state);
//   - different hash: (record, ErrIdempotencyMismatch), answer 422.
func (r *reader) CheckIdempotency(key string, requestHash []byte) (*IdempotencyRecord, error) {
	rec, err := r.GetIdempotency(key)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(rec.RequestHash, requestHash) {
		return &rec, ErrIdempotencyMismatch
	}
	return &rec, nil
}

// PutIdempotency stores (or replaces) the record for key in this
// transaction, normally together with the resource it created.
func (t *Tx) PutIdempotency(key string, rec IdempotencyRecord) error {
	if t.closed {
		return ErrTxClosed
	}
	if err := validIdemKey(key); err != nil {
		return err
	}
	if rec.Created.IsZero() {
		rec.Created = t.s.now()
		t.s.idemStamped(key)
	}
	if old := t.btx.Bucket(bIdem).Get([]byte(key)); old != nil {
		if prev, err := decodeIdem(old); err == nil {
			if err := t.del(bIdemTime, idemTimeKey(prev.Created, key)); err != nil {
				return err
			}
		}
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := t.put(bIdem, []byte(key), raw); err != nil {
		return err
	}
	return t.put(bIdemTime, idemTimeKey(rec.Created, key), nil)
}

// idemStamped notes the monotonic time at which this run stamped key.
func (s *Store) idemStamped(key string) {
	s.idemMu.Lock()
	s.idemMono[key] = s.clock.Mono()
	s.idemMu.Unlock()
}

// idemYoung reports whether this run stamped key less than olderThan ago
// by the monotonic clock. Entries older than that protect nothing and go.
func (s *Store) idemYoung(key []byte, olderThan time.Duration) bool {
	s.idemMu.Lock()
	defer s.idemMu.Unlock()
	at, ok := s.idemMono[string(key)]
	if !ok {
		return false
	}
	if s.clock.Mono()-at < olderThan {
		return true
	}
	delete(s.idemMono, string(key))
	return false
}

// forgetOldStamps drops the stamps olderThan old: also those of keys whose
// transaction was rolled back, which no prune meets.
func (s *Store) forgetOldStamps(olderThan time.Duration) {
	s.idemMu.Lock()
	defer s.idemMu.Unlock()
	now := s.clock.Mono()
	for k, at := range s.idemMono {
		if now-at >= olderThan {
			delete(s.idemMono, k)
		}
	}
}

// PruneIdempotency deletes keys created more than olderThan ago and returns
// how many went. olderThan below MinIdempotencyRetention is refused. Work
// is done in transactions of at most 1000 keys so the store is never held
// for long.
//
// Age is wall-clock age (Created), since keys outlive restarts. A key
// stamped by this run (PutIdempotency with Created unset) must in
// addition be olderThan old on the monotonic clock: a wall clock stepped
// forward (NTP correcting a till that booted with its clock behind) never
// prunes a key early. A step back only makes wall ages shorter, so keys
// are then kept longer, never pruned early. For keys from earlier runs
// the wall clock is all there is.
func (s *Store) PruneIdempotency(ctx context.Context, olderThan time.Duration) (int, error) {
	if olderThan < MinIdempotencyRetention {
		return 0, fmt.Errorf("queue: idempotency keys are kept at least %s, not %s", MinIdempotencyRetention, olderThan)
	}
	cutoff := timeKey(s.now().Add(-olderThan))
	total := 0
	var after []byte // keys up to here were kept as young on the monotonic clock
	for {
		n := 0
		err := s.Update(ctx, func(tx *Tx) error {
			n = 0
			c := tx.btx.Bucket(bIdemTime).Cursor()
			var victims [][]byte
			k, _ := c.First()
			if after != nil {
				k, _ = c.Seek(after)
				if bytes.Equal(k, after) {
					k, _ = c.Next()
				}
			}
			for ; k != nil && len(victims) < 1000; k, _ = c.Next() {
				if len(k) < 8 || binary.BigEndian.Uint64(k) >= cutoff {
					break
				}
				after = clone(k)
				if s.idemYoung(k[8:], olderThan) {
					continue
				}
				victims = append(victims, clone(k))
			}
			for _, k := range victims {
				if err := tx.del(bIdemTime, k); err != nil {
					return err
				}
				if err := tx.del(bIdem, k[8:]); err != nil {
					return err
				}
			}
			n = len(victims)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < 1000 {
			s.forgetOldStamps(olderThan)
			return total, nil
		}
	}
}

// RunIdempotencySweeper prunes keys older than olderThan every interval
// (on the store clock's monotonic side) until ctx ends. Errors are logged,
// not fatal.
func (s *Store) RunIdempotencySweeper(ctx context.Context, interval, olderThan time.Duration) error {
	if olderThan < MinIdempotencyRetention {
		return fmt.Errorf("queue: idempotency keys are kept at least %s, not %s", MinIdempotencyRetention, olderThan)
	}
	for {
		n, err := s.PruneIdempotency(ctx, olderThan)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("idempotency sweep failed", "err", err)
		case n > 0:
			s.log.Info("idempotency keys pruned", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.clock.After(interval):
		}
	}
}
