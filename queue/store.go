// Package queue is kassa-agent's durable store: one bbolt file holding the
// records of payments and receipts, idempotency keys, persisted id sequences
// and the transactional outbox, plus the dispatcher that delivers outbox
// messages to providers at least once, in order per key.
//
// Every write goes through Store.Update, which is group-committed: concurrent
// callers share one fsync, a lone caller pays no added delay, and each call
// returns only after its data is on disk. A state change and the outbox
// messages it causes are written in the same Update and so commit together.
//
// Callers never touch bbolt directly: this package is the one place that
// knows the buckets and their encodings.
package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// OnCorrupt policies for a damaged store file found at start.
const (
	// CorruptRefuse makes Open fail with a *CorruptError and leave the file
	// where it is: the agent does not start over on an empty store by itself.
	CorruptRefuse = "refuse"
	// CorruptMoveAside renames the damaged file to <path>.corrupt-<timestamp>
	// and opens a fresh store; Store.Recovered reports what happened.
	CorruptMoveAside = "move_aside"
)

// Options configure Open. The zero value is usable.
type Options struct {
	// OpenTimeout bounds the wait for the file lock (default 1s). A store
	// locked by another process gives an error matching ErrLocked.
	OpenTimeout time.Duration
	// OnCorrupt is CorruptRefuse (default) or CorruptMoveAside.
	OnCorrupt string
	// Logger receives store events; nil discards them.
	Logger *slog.Logger
	// Clock is the store's clock: wall time for message and idempotency
	// timestamps, monotonic time for ages within a run. nil means Now if
	// set, else SystemClock.
	Clock Clock
	// Now, kept for older callers, sets only the wall clock (the monotonic
	// one is the system's). Clock takes precedence.
	Now func() time.Time
}

var (
	// ErrLocked: another process holds the store file.
	ErrLocked = errors.New("store is locked")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("queue: store closed")
	// ErrNotFound: no record, message or key with that id.
	ErrNotFound = errors.New("queue: not found")
	// ErrTxClosed: a Tx or ReadTx was used after its function returned.
	ErrTxClosed = errors.New("queue: transaction used after its function returned")
	// ErrSchemaTooNew: the file was written by a newer kassa-agent.
	ErrSchemaTooNew = errors.New("queue: store schema is newer than this program")
)

type lockedError struct{ path string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("another kassa-agent is already running (store %s is locked)", e.path)
}
func (e *lockedError) Is(target error) bool { return target == ErrLocked }

// CorruptError describes a damaged store file found at start.
type CorruptError struct {
	Path    string    // the store path that was checked
	Reason  string    // what the check found
	MovedTo string    // where the file went (move_aside), "" under refuse
	Found   time.Time // when it was detected
}

func (e *CorruptError) Error() string {
	if e.MovedTo != "" {
		return fmt.Sprintf("queue: store %s is damaged (%s); moved aside to %s", e.Path, e.Reason, e.MovedTo)
	}
	return fmt.Sprintf("queue: store %s is damaged (%s); refusing to start over (set store.on_corrupt = \"move_aside\" to keep it aside and start empty)", e.Path, e.Reason)
}

// Store is the open store file. It is safe for concurrent use.
type Store struct {
	db        *bolt.DB
	path      string
	log       *slog.Logger
	clock     Clock
	recovered *CorruptError

	// group commit state, see commit.go
	gmu     sync.Mutex
	idle    *sync.Cond
	pending []*updateReq
	leading bool
	closed  bool

	wake chan struct{} // signalled after a commit that enqueued messages

	seqMu sync.Mutex
	seqs  map[string]*Sequence

	// idemMono holds, for idempotency keys stamped by this run, the
	// monotonic reading at their creation: see PruneIdempotency.
	idemMu   sync.Mutex
	idemMono map[string]time.Duration
}

// Bucket names. Records live in "rec:<collection>".
var (
	bMeta        = []byte("meta")
	bOutMsg      = []byte("ob:msg")     // id -> message
	bOutKey      = []byte("ob:key")     // keyIndexKey(key, id) -> nil: FIFO per key
	bOutDue      = []byte("ob:due")     // dueKey(nextAttempt, id) -> nil: heads of keys only
	bOutParked   = []byte("ob:parked")  // id -> nil
	bOutDropped  = []byte("ob:dropped") // id -> dropped record
	bIdem        = []byte("idem")       // key -> idempotency record
	bIdemTime    = []byte("idem:time")  // created(8) + key -> nil
	bSeq         = []byte("seq")        // name -> next unreserved value
	keySchema    = []byte("schema")
	recordPrefix = "rec:"
)

// SchemaVersion is the layout version this program writes.
const SchemaVersion = 1

type migration struct {
	to   uint64
	name string
	run  func(*bolt.Tx) error
}

// migrations bring a file from version to-1 up to to. They run at Open in one
// transaction, so a crash leaves the file at the old version.
var migrations = []migration{
	{to: 1, name: "initial buckets", run: func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bOutMsg, bOutKey, bOutDue, bOutParked, bOutDropped, bIdem, bIdemTime, bSeq} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}},
}

// Open opens (creating if needed) the store at path. A damaged file is
// detected before use and handled according to opts.OnCorrupt.
func Open(path string, opts Options) (*Store, error) {
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = time.Second
	}
	switch opts.OnCorrupt {
	case "":
		opts.OnCorrupt = CorruptRefuse
	case CorruptRefuse, CorruptMoveAside:
	default:
		return nil, fmt.Errorf("queue: store.on_corrupt must be %q or %q, not %q", CorruptRefuse, CorruptMoveAside, opts.OnCorrupt)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clock := pickClock(opts.Clock, opts.Now, SystemClock)
	now := clock.Now

	var recovered *CorruptError
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.Size() > 0:
		reason, err := checkFile(path, opts.OpenTimeout)
		if err != nil {
			return nil, err
		}
		if reason != "" {
			ce := &CorruptError{Path: path, Reason: reason, Found: now()}
			if opts.OnCorrupt != CorruptMoveAside {
				log.Error("STORE DAMAGED: refusing to start", "path", path, "reason", reason, "on_corrupt", opts.OnCorrupt)
				return nil, ce
			}
			moved := path + ".corrupt-" + now().UTC().Format("20060102T150405.000000000Z")
			if err := os.Rename(path, moved); err != nil {
				return nil, fmt.Errorf("queue: moving damaged store aside: %w (%v)", err, ce)
			}
			ce.MovedTo = moved
			recovered = ce
			log.Error("STORE DAMAGED: moved aside, starting with an empty store", "path", path, "reason", reason, "moved_to", moved)
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("queue: %w", err)
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.OpenTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, &lockedError{path: path}
		}
		return nil, fmt.Errorf("queue: open %s: %w", path, err)
	}
	// Durability is the point of this store; never let anyone turn it off.
	db.NoSync = false

	s := &Store{
		db:        db,
		path:      path,
		log:       log,
		clock:     clock,
		recovered: recovered,
		wake:      make(chan struct{}, 1),
		seqs:      make(map[string]*Sequence),
		idemMono:  make(map[string]time.Duration),
	}
	s.idle = sync.NewCond(&s.gmu)
	if err := s.migrate(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bMeta)
		if err != nil {
			return err
		}
		var have uint64
		if v := meta.Get(keySchema); len(v) == 8 {
			have = binary.BigEndian.Uint64(v)
		}
		if have > SchemaVersion {
			return fmt.Errorf("%w: file is version %d, this program knows up to %d", ErrSchemaTooNew, have, SchemaVersion)
		}
		for _, m := range migrations {
			if m.to <= have {
				continue
			}
			if err := m.run(tx); err != nil {
				return fmt.Errorf("queue: migration to schema %d (%s): %w", m.to, m.name, err)
			}
			s.log.Info("store schema migrated", "to", m.to, "step", m.name)
			have = m.to
		}
		return meta.Put(keySchema, u64(have))
	})
}

// SchemaVersionOf reports the schema version stored in the open file.
func (s *Store) SchemaVersionOf() (uint64, error) {
	var v uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bMeta); b != nil {
			if raw := b.Get(keySchema); len(raw) == 8 {
				v = binary.BigEndian.Uint64(raw)
			}
		}
		return nil
	})
	return v, err
}

// Recovered reports the damaged file that Open moved aside (move_aside
// policy), or nil. The agent shows it in /v1/status and diagnostics.
func (s *Store) Recovered() *CorruptError { return s.recovered }

// Clock is the store's clock (Options.Clock, or the system clock). The
// sale engine shares it so that all parts of the agent see one time.
func (s *Store) Clock() Clock { return s.clock }

func (s *Store) now() time.Time { return s.clock.Now() }

// Path is the store file's path.
func (s *Store) Path() string { return s.path }

// Size is the store file's size in bytes.
func (s *Store) Size() (int64, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0, fmt.Errorf("queue: %w", err)
	}
	return fi.Size(), nil
}

// Check runs bbolt's consistency check over the whole file (page
// reachability, freelist, key order) and returns the problems it found.
func (s *Store) Check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("queue: consistency check failed: %w", errors.Join(errs...))
		}
		return nil
	})
}

// Close waits for commits in progress, then closes the file. Later calls
// fail with ErrClosed. Stop the dispatcher (cancel its Run) first.
func (s *Store) Close() error {
	s.gmu.Lock()
	if s.closed {
		s.gmu.Unlock()
		return nil
	}
	s.closed = true
	for s.leading {
		s.idle.Wait()
	}
	s.gmu.Unlock()
	return s.db.Close()
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// timeKey encodes t as nanoseconds since the epoch, big-endian, so byte
// order is time order. Times before 1970 clamp to 0.
func timeKey(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	n := t.UnixNano()
	if n < 0 {
		return 0
	}
	return uint64(n)
}
