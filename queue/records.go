package queue

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Records are opaque values (the agent stores JSON) in named collections
// such as "payments", "receipts" or "fiscal_ops", keyed by a string id and
// kept in byte order of the id. Ids that should list in creation order can
// be made with SortableID.

// ErrInvalidName: an empty or oversized collection name or record id.
var ErrInvalidName = errors.New("queue: invalid collection name or id")

const (
	maxCollection = 64
	maxID         = 512
)

// SortableID formats n as a fixed-width decimal string, so that ids made
// from a Sequence sort by number in a collection (and Scan with Reverse
// lists newest first).
func SortableID(n uint64) string { return fmt.Sprintf("%020d", n) }

type reader struct {
	btx    *bolt.Tx
	closed bool
}

func collectionBucket(coll string) ([]byte, error) {
	if coll == "" || len(coll) > maxCollection {
		return nil, fmt.Errorf("%w: collection %q", ErrInvalidName, coll)
	}
	return []byte(recordPrefix + coll), nil
}

func checkID(id string) error {
	if id == "" || len(id) > maxID {
		return fmt.Errorf("%w: id of %d bytes", ErrInvalidName, len(id))
	}
	return nil
}

// Get returns a copy of the record, or ErrNotFound.
func (r *reader) Get(coll, id string) ([]byte, error) {
	if r.closed {
		return nil, ErrTxClosed
	}
	name, err := collectionBucket(coll)
	if err != nil {
		return nil, err
	}
	b := r.btx.Bucket(name)
	if b == nil {
		return nil, ErrNotFound
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	return clone(v), nil
}

// ForEach calls fn for every record of coll in id order. val is valid only
// during the call. An error from fn stops the walk and is returned.
func (r *reader) ForEach(coll string, fn func(id string, val []byte) error) error {
	return r.Scan(coll, ScanOptions{}, fn)
}

// ScanOptions select part of a collection.
type ScanOptions struct {
	// From is the first id to visit (inclusive); "" starts at the first
	// (or, with Reverse, the last) record. With Reverse, From is the
	// highest id visited.
	From string
	// After, when set, skips ids <= After (>= After with Reverse): the
	// cursor for "the next page".
	After string
	// Reverse walks from the highest id down.
	Reverse bool
	// Limit stops after that many records; 0 means no limit.
	Limit int
}

// Scan calls fn for records of coll as selected by opts. val is valid only
// during the call.
func (r *reader) Scan(coll string, opts ScanOptions, fn func(id string, val []byte) error) error {
	if r.closed {
		return ErrTxClosed
	}
	name, err := collectionBucket(coll)
	if err != nil {
		return err
	}
	b := r.btx.Bucket(name)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	var k, v []byte
	switch {
	case !opts.Reverse && opts.After != "":
		k, v = c.Seek([]byte(opts.After))
		if k != nil && string(k) == opts.After {
			k, v = c.Next()
		}
	case !opts.Reverse && opts.From != "":
		k, v = c.Seek([]byte(opts.From))
	case !opts.Reverse:
		k, v = c.First()
	default:
		start := opts.From
		skipEqual := false
		if opts.After != "" {
			start, skipEqual = opts.After, true
		}
		if start == "" {
			k, v = c.Last()
			break
		}
		k, v = c.Seek([]byte(start))
		switch {
		case k == nil:
			k, v = c.Last()
		case string(k) > start || (skipEqual && string(k) == start):
			k, v = c.Prev()
		}
	}
	n := 0
	for ; k != nil; n++ {
		if opts.Limit > 0 && n >= opts.Limit {
			return nil
		}
		if err := fn(string(k), v); err != nil {
			return err
		}
		if opts.Reverse {
			k, v = c.Prev()
		} else {
			k, v = c.Next()
		}
	}
	return nil
}

// Count returns the number of records in coll.
func (r *reader) Count(coll string) (int, error) {
	if r.closed {
		return 0, ErrTxClosed
	}
	name, err := collectionBucket(coll)
	if err != nil {
		return 0, err
	}
	b := r.btx.Bucket(name)
	if b == nil {
		return 0, nil
	}
	return b.Stats().KeyN, nil
}

// Put stores val under id in coll, replacing any previous value.
func (t *Tx) Put(coll, id string, val []byte) error {
	name, err := collectionBucket(coll)
	if err != nil {
		return err
	}
	if err := checkID(id); err != nil {
		return err
	}
	if val == nil {
		val = []byte{}
	}
	return t.put(name, []byte(id), val)
}

// Delete removes id from coll; deleting a missing record is not an error.
func (t *Tx) Delete(coll, id string) error {
	name, err := collectionBucket(coll)
	if err != nil {
		return err
	}
	return t.del(name, []byte(id))
}
