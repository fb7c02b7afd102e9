package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Message is one outbox entry: something to deliver to a provider at least
// once. Messages with the same Key are delivered strictly in enqueue order;
// a message is removed only after its handler succeeded, so a receiver may
// see a message again after a crash and should deduplicate on ID, which is
// unique per store and never reused.
type Message struct {
	ID          uint64    // assigned by Enqueue, increasing
	Kind        string    // selects the handler, e.g. "smartpay.confirm"
	Key         string    // ordering key, e.g. the purchase id
	Payload     []byte    // opaque to the queue
	Created     time.Time // when it was enqueued
	Attempts    int       // failed deliveries so far
	NextAttempt time.Time // not delivered before this time
	LastError   string    // error of the last failed delivery
	// Parked messages are not delivered until a technician retries them;
	// messages behind a parked one with the same Key wait too, so order
	// holds.
	Parked       bool
	ParkedReason string
	ParkedAt     time.Time
	// RetriedAt is when a technician last retried it; the age limit
	// counts from here when set.
	RetriedAt time.Time
	// Damaged marks a record that could not be decoded. Raw is then its
	// bytes as found, for a technician; ID is its key in the store, Key
	// is taken from the key index when it names the record, LastError
	// holds the decode error, and the other fields are empty. The
	// dispatcher parks such a message (it cannot be delivered nor
	// retried, only dropped) and lets its key's later messages go on.
	Damaged bool
	Raw     []byte
}

// Limits on message fields.
const (
	MaxKindLen    = 128
	MaxKeyLen     = 1024
	MaxPayloadLen = 1 << 20
	maxErrorLen   = 2048
	// maxRawLen bounds the bytes of a damaged record kept with it: more
	// than any record this program writes.
	maxRawLen = 2*MaxPayloadLen + 64<<10
)

// ErrInvalidMessage: Enqueue was given an unusable message.
var ErrInvalidMessage = errors.New("queue: invalid message")

// ErrNotParked: RetryParked/DropParked on a message that is not parked.
var ErrNotParked = errors.New("queue: message is not parked")

// ErrDamagedMessage: RetryParked on a message whose record could not be
// decoded; there is nothing to deliver, it can only be dropped.
var ErrDamagedMessage = errors.New("queue: message record is damaged; it can only be dropped")

const msgFormat = 1

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	return binary.AppendUvarint(b, timeKey(t))
}

// encodeMessage is the on-disk form: a format byte, then fields as
// uvarint-length strings and uvarint nanosecond times.
func encodeMessage(m *Message) []byte {
	b := make([]byte, 0, 64+len(m.Kind)+len(m.Key)+len(m.Payload)+len(m.LastError)+len(m.ParkedReason)+len(m.Raw))
	b = append(b, msgFormat)
	b = binary.AppendUvarint(b, m.ID)
	b = appendString(b, m.Kind)
	b = appendString(b, m.Key)
	b = binary.AppendUvarint(b, uint64(len(m.Payload)))
	b = append(b, m.Payload...)
	b = appendTime(b, m.Created)
	b = binary.AppendUvarint(b, uint64(m.Attempts))
	b = appendTime(b, m.NextAttempt)
	b = appendString(b, m.LastError)
	var flags byte
	if m.Parked {
		flags |= 1
	}
	if m.Damaged {
		flags |= 2
	}
	b = append(b, flags)
	b = appendString(b, m.ParkedReason)
	b = appendTime(b, m.ParkedAt)
	b = appendTime(b, m.RetriedAt)
	if m.Damaged {
		// After every older field, so a program that does not know the
		// flag still reads the rest.
		b = binary.AppendUvarint(b, uint64(len(m.Raw)))
		b = append(b, m.Raw...)
	}
	return b
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(limit int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) || n > uint64(len(d.b)) {
		d.err = errors.New("bad length")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errors.New("short")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) time() time.Time {
	n := d.uvarint()
	if n == 0 || n > 1<<63-1 {
		return time.Time{}
	}
	return time.Unix(0, int64(n))
}

// decodeMessage parses encodeMessage's output. The payload is copied, so
// the result does not alias bbolt memory.
func decodeMessage(raw []byte) (Message, error) {
	d := &decoder{b: raw}
	if f := d.byte(); d.err == nil && f != msgFormat {
		return Message{}, fmt.Errorf("queue: unknown message format %d", f)
	}
	var m Message
	m.ID = d.uvarint()
	m.Kind = string(d.bytes(MaxKindLen))
	m.Key = string(d.bytes(MaxKeyLen))
	m.Payload = clone(d.bytes(MaxPayloadLen))
	m.Created = d.time()
	att := d.uvarint()
	m.NextAttempt = d.time()
	m.LastError = string(d.bytes(maxErrorLen * 4))
	flags := d.byte()
	m.ParkedReason = string(d.bytes(maxErrorLen * 4))
	m.ParkedAt = d.time()
	m.RetriedAt = d.time()
	if flags&2 != 0 {
		m.Damaged = true
		m.Raw = clone(d.bytes(maxRawLen))
	}
	if d.err != nil {
		return Message{}, fmt.Errorf("queue: damaged message record: %w", d.err)
	}
	if att > 1<<31 {
		return Message{}, errors.New("queue: damaged message record: attempts out of range")
	}
	m.Attempts = int(att)
	m.Parked = flags&1 != 0
	if m.Payload == nil {
		m.Payload = []byte{}
	}
	return m, nil
}

// damagedMessage stands for the record raw, stored under id, that
// decodeMessage refused with err.
func damagedMessage(id uint64, raw []byte, err error) Message {
	if len(raw) > maxRawLen {
		raw = raw[:maxRawLen]
	}
	return Message{ID: id, Damaged: true, Raw: clone(raw), Payload: []byte{}, LastError: err.Error()}
}

// keyOf finds the key whose index names message id. It walks the whole key
// index, which is only done for a damaged record, whose own Key cannot be
// trusted.
func keyOf(btx *bolt.Tx, id uint64) (key string, ik []byte, ok bool) {
	c := btx.Bucket(bOutKey).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) < 10 || binary.BigEndian.Uint64(k[len(k)-8:]) != id {
			continue
		}
		if n := int(binary.BigEndian.Uint16(k)); n == len(k)-10 {
			return string(k[2 : 2+n]), clone(k), true
		}
	}
	return "", nil, false
}

// keyIndexKey orders messages per key: len(key) as 2 bytes, key, id.
func keyIndexKey[K ~string | ~[]byte](key K, id uint64) []byte {
	b := make([]byte, 0, 2+len(key)+8)
	b = binary.BigEndian.AppendUint16(b, uint16(len(key)))
	b = append(b, key...)
	return binary.BigEndian.AppendUint64(b, id)
}

func keyPrefix(key string) []byte {
	b := make([]byte, 0, 2+len(key))
	b = binary.BigEndian.AppendUint16(b, uint16(len(key)))
	return append(b, key...)
}

func dueKey(t time.Time, id uint64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, timeKey(t))
	binary.BigEndian.PutUint64(b[8:], id)
	return b
}

// headOf returns the id of the oldest message with key, or 0.
func headOf(btx *bolt.Tx, key string) uint64 {
	p := keyPrefix(key)
	k, _ := btx.Bucket(bOutKey).Cursor().Seek(p)
	if k == nil || len(k) != len(p)+8 || string(k[:len(p)]) != string(p) {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(p):])
}

// Enqueue adds m to the outbox in this transaction and returns its id. Only
// Kind, Key, Payload and (optionally, to delay the first attempt)
// NextAttempt are taken from m. The dispatcher is woken when the
// transaction commits.
func (t *Tx) Enqueue(m Message) (uint64, error) {
	if t.closed {
		return 0, ErrTxClosed
	}
	if m.Kind == "" || len(m.Kind) > MaxKindLen {
		return 0, fmt.Errorf("%w: kind %q", ErrInvalidMessage, m.Kind)
	}
	if m.Key == "" || len(m.Key) > MaxKeyLen {
		return 0, fmt.Errorf("%w: key of %d bytes", ErrInvalidMessage, len(m.Key))
	}
	if len(m.Payload) > MaxPayloadLen {
		return 0, fmt.Errorf("%w: payload of %d bytes", ErrInvalidMessage, len(m.Payload))
	}
	msgs := t.btx.Bucket(bOutMsg)
	// A number skipped by a function that then fails is never reused:
	// ids only have to be unique and increasing.
	id, err := msgs.NextSequence()
	if err != nil {
		return 0, err
	}
	now := t.s.now()
	stored := Message{
		ID:          id,
		Kind:        m.Kind,
		Key:         m.Key,
		Payload:     m.Payload,
		Created:     now,
		NextAttempt: m.NextAttempt,
	}
	if stored.NextAttempt.IsZero() || stored.NextAttempt.Before(now) {
		stored.NextAttempt = now
	}
	isHead := headOf(t.btx, m.Key) == 0
	if err := t.put(bOutMsg, u64(id), encodeMessage(&stored)); err != nil {
		return 0, err
	}
	if err := t.put(bOutKey, keyIndexKey(m.Key, id), nil); err != nil {
		return 0, err
	}
	if isHead {
		if err := t.put(bOutDue, dueKey(stored.NextAttempt, id), nil); err != nil {
			return 0, err
		}
	}
	t.enqueued = true
	return id, nil
}

// message reads one message inside a transaction.
func (r *reader) message(id uint64) (Message, error) {
	if r.closed {
		return Message{}, ErrTxClosed
	}
	return messageAt(r.btx.Bucket(bOutMsg).Cursor(), id)
}

// messageAt reads message id through c, a cursor on the messages bucket.
func messageAt(c *bolt.Cursor, id uint64) (Message, error) {
	raw, ok := seekExact(c, u64(id))
	if !ok {
		return Message{}, fmt.Errorf("%w: message %d", ErrNotFound, id)
	}
	return decodeMessage(raw)
}

// Message returns the outbox message id (pending or parked).
func (r *reader) Message(id uint64) (Message, error) { return r.message(id) }

func (t *Tx) writeMessage(m *Message) error {
	return t.put(bOutMsg, u64(m.ID), encodeMessage(m))
}

// removeMessage deletes a delivered or dropped message with its index
// entries, then lets the next message of its key become due.
func (t *Tx) removeMessage(m *Message) error {
	if err := t.del(bOutDue, dueKey(m.NextAttempt, m.ID)); err != nil {
		return err
	}
	if m.Parked { // only parked messages are in the parked index
		if err := t.del(bOutParked, u64(m.ID)); err != nil {
			return err
		}
	}
	if err := t.del(bOutKey, keyIndexKey(m.Key, m.ID)); err != nil {
		return err
	}
	if err := t.del(bOutMsg, u64(m.ID)); err != nil {
		return err
	}
	return t.promote(m.Key)
}

// promote makes the head of key due, unless it is parked (then the key
// stays blocked until a technician acts) or already due.
func (t *Tx) promote(key string) error {
	id := headOf(t.btx, key)
	if id == 0 {
		return nil
	}
	raw := t.btx.Bucket(bOutMsg).Get(u64(id))
	if raw == nil {
		return fmt.Errorf("%w: message %d", ErrNotFound, id)
	}
	_, nextAttempt, parked, err := decodeIndexFields(raw)
	if err != nil {
		// Due at once: the dispatcher meets it, parks it and goes on.
		return t.put(bOutDue, dueKey(time.Time{}, id), nil)
	}
	if parked {
		return nil
	}
	return t.put(bOutDue, dueKey(nextAttempt, id), nil)
}

// outboxCursors are a transaction's cursors on the outbox buckets, kept
// for all the mark-dones of one commit: each bbolt Get, Put or Delete
// opens a cursor whose path from the root is allocated anew, and a
// mark-done makes eight such steps.
type outboxCursors struct {
	msg, key, due, parked *bolt.Cursor
}

func (t *Tx) outboxCursors() (*outboxCursors, error) {
	if t.oc != nil {
		return t.oc, nil
	}
	var oc outboxCursors
	for _, c := range []struct {
		c    **bolt.Cursor
		name []byte
	}{{&oc.msg, bOutMsg}, {&oc.key, bOutKey}, {&oc.due, bOutDue}, {&oc.parked, bOutParked}} {
		b, err := t.bucketForWrite(c.name)
		if err != nil {
			return nil, err
		}
		*c.c = b.Cursor()
	}
	t.oc = &oc
	return t.oc, nil
}

// seekExact positions c on key and reports whether key is there.
func seekExact(c *bolt.Cursor, key []byte) (val []byte, ok bool) {
	k, v := c.Seek(key)
	return v, k != nil && bytes.Equal(k, key)
}

// deleteExact deletes key through c if it is there.
func deleteExact(c *bolt.Cursor, key []byte) error {
	if _, ok := seekExact(c, key); !ok {
		return nil
	}
	return c.Delete()
}

// markDone removes a delivered message and makes the next message of its
// key due. It is a no-op if the message is gone already.
//
// It runs once per delivery, so it is built for cost: it reads only the
// fields the indexes need, and it does every read and check before its
// first write, so a damaged record of its own fails it with nothing changed
// and without an undo log. (A damaged next message does not fail it: that
// one is made due so the dispatcher parks it.) A write failing after that (bbolt refusing a write
// it accepted a moment ago) is returned wrapped in ErrAborted: the whole
// transaction must then be dropped.
func (t *Tx) markDone(id uint64) error {
	if t.closed {
		return ErrTxClosed
	}
	oc, err := t.outboxCursors()
	if err != nil {
		return err
	}
	idk := u64(id)
	raw, ok := seekExact(oc.msg, idk)
	if !ok {
		return nil
	}
	key, nextAttempt, parked, err := decodeIndexFields(raw)
	if err != nil {
		return err
	}
	ik := keyIndexKey(key, id)
	k, _ := oc.key.Seek(ik)
	indexed := bytes.Equal(k, ik)
	// The next message of the key is the entry after this one in the key
	// index (or, if this one's entry is missing, the one Seek found).
	if indexed {
		k, _ = oc.key.Next()
	}
	var nextDue []byte
	if p := ik[:len(ik)-8]; len(k) == len(ik) && bytes.HasPrefix(k, p) {
		next := binary.BigEndian.Uint64(k[len(p):])
		nraw, ok := seekExact(oc.msg, u64(next))
		if !ok {
			return fmt.Errorf("%w: message %d", ErrNotFound, next)
		}
		_, at, nparked, err := decodeIndexFields(nraw)
		switch {
		case err != nil:
			// An undecodable next is made due at once: the dispatcher
			// parks it and lets the key go on (see parkDamaged).
			nextDue = dueKey(time.Time{}, next)
		case !nparked: // a parked head keeps its key blocked until a technician acts
			nextDue = dueKey(at, next)
		}
	}

	err = deleteExact(oc.due, dueKey(nextAttempt, id))
	if err == nil && parked {
		err = deleteExact(oc.parked, idk)
	}
	if err == nil && indexed {
		err = deleteExact(oc.key, ik)
	}
	if err == nil {
		err = deleteExact(oc.msg, idk)
	}
	if err == nil && nextDue != nil {
		err = oc.due.Bucket().Put(nextDue, nil)
	}
	if err != nil {
		return fmt.Errorf("%w: marking message %d done: %v", ErrAborted, id, err)
	}
	return nil
}

// decodeIndexFields reads from a message record what its index entries are
// made of: Key, NextAttempt and the parked flag. key aliases raw.
func decodeIndexFields(raw []byte) (key []byte, nextAttempt time.Time, parked bool, err error) {
	d := &decoder{b: raw}
	if f := d.byte(); d.err == nil && f != msgFormat {
		return nil, time.Time{}, false, fmt.Errorf("queue: unknown message format %d", f)
	}
	d.uvarint() // id
	d.bytes(MaxKindLen)
	k := d.bytes(MaxKeyLen)
	d.bytes(MaxPayloadLen)
	d.time() // created
	d.uvarint()
	nextAttempt = d.time()
	d.bytes(maxErrorLen * 4)
	flags := d.byte()
	if d.err != nil {
		return nil, time.Time{}, false, fmt.Errorf("queue: damaged message record: %w", d.err)
	}
	return k, nextAttempt, flags&1 != 0, nil
}

// markFailed records a failed attempt: either a new NextAttempt or parking.
func (t *Tx) markFailed(id uint64, errText string, park bool, parkReason string, now time.Time, delay time.Duration) (Message, error) {
	m, err := t.message(id)
	if err != nil {
		return Message{}, err
	}
	if len(errText) > maxErrorLen {
		errText = errText[:maxErrorLen]
	}
	if err := t.del(bOutDue, dueKey(m.NextAttempt, m.ID)); err != nil {
		return Message{}, err
	}
	m.Attempts++
	m.LastError = errText
	if park {
		m.Parked = true
		m.ParkedReason = parkReason
		m.ParkedAt = now
		if err := t.put(bOutParked, u64(m.ID), nil); err != nil {
			return Message{}, err
		}
		return m, t.writeMessage(&m)
	}
	m.NextAttempt = now.Add(delay)
	if err := t.put(bOutDue, dueKey(m.NextAttempt, m.ID), nil); err != nil {
		return Message{}, err
	}
	return m, t.writeMessage(&m)
}

// parkDamaged handles a due-index entry dk naming message id whose record
// is missing or does not decode. It reports what it did: a damaged record
// is replaced by a parked Message holding its bytes and decode error
// (damaged set); a missing one has its index entries removed (damaged
// unset). Either way the entry leaves its key's line and the key's next
// message becomes due: per-key order exists so that a confirm goes before
// its fiscal message, but a record that can never be delivered would hold
// its key forever, and the submissions behind it would be lost. A record
// that decodes after all (nothing else writes it, so this does not happen)
// is left alone, and ok is false.
func (t *Tx) parkDamaged(id uint64, dk []byte, now time.Time) (m Message, damaged, ok bool, err error) {
	raw := t.btx.Bucket(bOutMsg).Get(u64(id))
	var derr error
	if raw != nil {
		if _, derr = decodeMessage(raw); derr == nil {
			return Message{}, false, false, nil
		}
	}
	if err := t.del(bOutDue, dk); err != nil {
		return Message{}, false, false, err
	}
	key, ik, indexed := keyOf(t.btx, id)
	if indexed {
		if err := t.del(bOutKey, ik); err != nil {
			return Message{}, false, false, err
		}
	}
	m = Message{ID: id, Key: key}
	if raw != nil {
		m = damagedMessage(id, raw, derr)
		m.Key = key
		m.Parked = true
		m.ParkedAt = now
		m.ParkedReason = "undecodable record, kept as found; drop it once the payment is checked by hand"
		if err := t.put(bOutParked, u64(id), nil); err != nil {
			return Message{}, false, false, err
		}
		if err := t.writeMessage(&m); err != nil {
			return Message{}, false, false, err
		}
	}
	if indexed {
		if err := t.promote(key); err != nil {
			return Message{}, false, false, err
		}
	}
	return m, raw != nil, true, nil
}
