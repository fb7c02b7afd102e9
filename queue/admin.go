package queue

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// OutboxStats summarise the outbox for /v1/outbox, /v1/status and diag.
type OutboxStats struct {
	Pending       int       // not parked (due, backing off, or waiting behind an earlier message)
	Parked        int       // parked, waiting for a technician
	Dropped       int       // dropped by a technician (kept as a record)
	OldestPending time.Time // Created of the oldest pending message; zero if none
	// OldestPendingAge is now - OldestPending, zero if none.
	OldestPendingAge time.Duration
}

// OutboxStats counts the outbox. It walks the index pages, not the messages.
func (s *Store) OutboxStats() (OutboxStats, error) {
	var st OutboxStats
	err := s.View(func(rt *ReadTx) error {
		all := rt.btx.Bucket(bOutMsg).Stats().KeyN
		st.Parked = rt.btx.Bucket(bOutParked).Stats().KeyN
		st.Dropped = rt.btx.Bucket(bOutDropped).Stats().KeyN
		st.Pending = all - st.Parked
		// Ids grow with time, so the first non-parked id is the oldest.
		parked := rt.btx.Bucket(bOutParked)
		c := rt.btx.Bucket(bOutMsg).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if parked.Get(k) != nil {
				continue
			}
			m, err := decodeMessage(v)
			if err != nil {
				continue // damaged: it has no creation time; ListOutbox shows it
			}
			st.OldestPending = m.Created
			st.OldestPendingAge = s.now().Sub(m.Created)
			break
		}
		return nil
	})
	return st, err
}

// Filter selects messages for ListOutbox.
type Filter string

// Filters for ListOutbox.
const (
	FilterAll     Filter = "all"
	FilterPending Filter = "pending"
	FilterParked  Filter = "parked"
	// FilterDropped lists dropped messages (the record of technicians'
	// drops), newest first, with ParkedReason holding the drop note.
	FilterDropped Filter = "dropped"
)

// ListOutbox returns up to limit messages (oldest first, except
// FilterDropped) matching filter. limit <= 0 means 100.
func (s *Store) ListOutbox(filter Filter, limit int) ([]Message, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []Message
	err := s.View(func(rt *ReadTx) error {
		switch filter {
		case FilterParked:
			c := rt.btx.Bucket(bOutParked).Cursor()
			mc := rt.btx.Bucket(bOutMsg).Cursor()
			for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
				if len(k) != 8 {
					continue
				}
				raw, ok := seekExact(mc, k)
				if !ok {
					continue // a stale index entry: nothing to show
				}
				out = append(out, listed(rt, k, raw))
			}
		case FilterAll, FilterPending, "":
			parked := rt.btx.Bucket(bOutParked)
			c := rt.btx.Bucket(bOutMsg).Cursor()
			for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
				if filter == FilterPending && parked.Get(k) != nil {
					continue
				}
				out = append(out, listed(rt, k, v))
			}
		case FilterDropped:
			c := rt.btx.Bucket(bOutDropped).Cursor()
			for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
				m, err := decodeMessage(v)
				if err != nil {
					// The dropped list is a record; a damaged entry in it
					// is shown as found, with no key to look up.
					m = damagedMessage(idOf(k), v, err)
				}
				out = append(out, m)
			}
		default:
			return fmt.Errorf("queue: unknown outbox filter %q", filter)
		}
		return nil
	})
	return out, err
}

// listed is the outbox record raw under k as ListOutbox shows it: a record
// that does not decode is shown as a Damaged message with its error, so
// one bad record never hides the others.
func listed(rt *ReadTx, k, raw []byte) Message {
	m, err := decodeMessage(raw)
	if err == nil {
		return m
	}
	m = damagedMessage(idOf(k), raw, err)
	m.Key, _, _ = keyOf(rt.btx, m.ID)
	return m
}

// idOf reads a message id from a bucket key; 0 for a key of another size.
func idOf(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

// GetMessage returns one outbox message by id.
func (s *Store) GetMessage(id uint64) (Message, error) {
	var m Message
	err := s.View(func(rt *ReadTx) error {
		var err error
		m, err = rt.message(id)
		return err
	})
	return m, err
}

// RetryParked puts a parked message back in line: attempts start again at
// zero and its age limit counts from now. If it heads its key it is due at
// once.
func (s *Store) RetryParked(ctx context.Context, id uint64) error {
	var m Message
	err := s.Update(ctx, func(tx *Tx) error {
		var err error
		m, err = tx.message(id)
		if err != nil {
			return err
		}
		if !m.Parked {
			return fmt.Errorf("%w: message %d", ErrNotParked, id)
		}
		if m.Damaged {
			return fmt.Errorf("%w: message %d", ErrDamagedMessage, id)
		}
		now := s.now()
		m.Parked = false
		m.ParkedReason = ""
		m.ParkedAt = time.Time{}
		m.Attempts = 0
		m.RetriedAt = now
		m.NextAttempt = now
		if err := tx.del(bOutParked, u64(id)); err != nil {
			return err
		}
		if err := tx.writeMessage(&m); err != nil {
			return err
		}
		if headOf(tx.btx, m.Key) == m.ID {
			if err := tx.put(bOutDue, dueKey(m.NextAttempt, m.ID), nil); err != nil {
				return err
			}
		}
		tx.enqueued = true // wake the dispatcher
		return nil
	})
	if err == nil {
		s.log.Warn("parked outbox message retried by technician", "msg_id", id, "kind", m.Kind, "key", m.Key)
	}
	return err
}

// DropParked removes a parked message from the outbox for good. A copy is
// kept in the dropped list (ListOutbox(FilterDropped)) with the time and
// note, and the drop is logged. Only parked messages can be dropped.
func (s *Store) DropParked(ctx context.Context, id uint64, note string) error {
	var m Message
	err := s.Update(ctx, func(tx *Tx) error {
		var err error
		m, err = tx.message(id)
		if err != nil {
			return err
		}
		if !m.Parked {
			return fmt.Errorf("%w: message %d", ErrNotParked, id)
		}
		if err := tx.removeMessage(&m); err != nil {
			return err
		}
		rec := m
		rec.ParkedReason = fmt.Sprintf("dropped at %s: %s (parked: %s)", s.now().UTC().Format(time.RFC3339), note, m.ParkedReason)
		if err := tx.put(bOutDropped, u64(id), encodeMessage(&rec)); err != nil {
			return err
		}
		tx.enqueued = true // the next message of the key may now be due
		return nil
	})
	if err == nil {
		s.log.Warn("parked outbox message DROPPED by technician", "msg_id", id, "kind", m.Kind, "key", m.Key, "note", note, "last_error", m.LastError)
	}
	return err
}
