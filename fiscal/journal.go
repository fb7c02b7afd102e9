package fiscal

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"kassa-agent/fiscal/internal/atomicfile"
)

// Journal is the write-ahead record that makes PrintReceipt exactly-once. An entry is
// written (durably) before the first byte of a receipt goes to the register and
// finished once the document is known. Implementations must be safe for concurrent use.
type Journal interface {
	// Begin records op as in progress. It fails with ErrJournalExists if op.ID exists.
	Begin(ctx context.Context, op Pending) error
	// Finish records the document of a pending op. Finishing a finished op with the
	// same document is a no-op.
	Finish(ctx context.Context, id string, doc Document) error
	// Abort drops a pending op that is proved not to have produced a document.
	Abort(ctx context.Context, id string) error
	// Get returns the entry for id, or ErrJournalNotFound.
	Get(ctx context.Context, id string) (Entry, error)
	// Pending lists unfinished ops, oldest first.
	Pending(ctx context.Context) ([]Pending, error)
}

// Pending is an operation whose document may or may not exist yet.
type Pending struct {
	ID      string    `json:"id"`      // the caller's operation id (e.g. payment id)
	Receipt Receipt   `json:"receipt"` // what is being printed
	LastFD  uint32    `json:"last_fd"` // the FN's last FD number before the document
	FN      string    `json:"fn"`      // FN number the op started on
	Started time.Time `json:"started"`
	// Kind is what the op does; receipts have none (OpReceipt).
	Kind OpKind `json:"kind,omitempty"`
	// Cashier of a shift open or close.
	Cashier *Cashier `json:"cashier,omitempty"`
	// Amount of a cash in/out (kopecks).
	Amount int64 `json:"amount,omitempty"`
	// DocNumber is the device's through document number (11h) before a cash
	// in/out: cash documents are not in the FN, this counter says whether one printed.
	DocNumber int `json:"doc_number,omitempty"`
	// Correction of a correction receipt.
	Correction *Correction `json:"correction,omitempty"`
}

// Entry is a journal record.
type Entry struct {
	Op   Pending  `json:"op"`
	Done bool     `json:"done"`
	Doc  Document `json:"doc"`
}

var (
	ErrJournalExists   = errors.New("fiscal journal: id already exists")
	ErrJournalNotFound = errors.New("fiscal journal: id not found")
	ErrJournalNotOpen  = errors.New("fiscal journal: id is not pending")
)

// FileJournal is a durable Journal keeping one JSON file per operation in a
// directory; every change is written to a temporary file, fsync'd, renamed over the
// old one and the directory fsync'd, so a crash leaves either the old or the new record.
type FileJournal struct {
	dir string
	mu  sync.Mutex
}

// OpenFileJournal opens (creating) a journal directory.
func OpenFileJournal(dir string) (*FileJournal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fiscal journal: %w", err)
	}
	// Leftover temporaries are writes that never committed.
	tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	for _, t := range tmps {
		_ = os.Remove(t)
	}
	return &FileJournal{dir: dir}, nil
}

func (j *FileJournal) path(id string) string {
	return filepath.Join(j.dir, hex.EncodeToString([]byte(id))+".json")
}

func (j *FileJournal) read(id string) (Entry, error) {
	b, err := os.ReadFile(j.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return Entry{}, ErrJournalNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("fiscal journal: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return Entry{}, fmt.Errorf("fiscal journal: corrupt record %s: %w", j.path(id), err)
	}
	return e, nil
}

func (j *FileJournal) write(e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("fiscal journal: %w", err)
	}
	if err := atomicfile.Write(j.path(e.Op.ID), b, 0o600); err != nil {
		return fmt.Errorf("fiscal journal: %w", err)
	}
	return nil
}

func (j *FileJournal) Begin(_ context.Context, op Pending) error {
	if op.ID == "" {
		return errors.New("fiscal journal: empty id")
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.read(op.ID); err == nil {
		return ErrJournalExists
	} else if !errors.Is(err, ErrJournalNotFound) {
		return err
	}
	return j.write(Entry{Op: op})
}

func (j *FileJournal) Finish(_ context.Context, id string, doc Document) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, err := j.read(id)
	if err != nil {
		return err
	}
	if e.Done {
		if e.Doc.FD == doc.FD && e.Doc.FP == doc.FP {
			return nil
		}
		return fmt.Errorf("%w: already finished with FD %d", ErrJournalNotOpen, e.Doc.FD)
	}
	e.Done, e.Doc = true, doc
	return j.write(e)
}

func (j *FileJournal) Abort(_ context.Context, id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, err := j.read(id)
	if err != nil {
		return err
	}
	if e.Done {
		return ErrJournalNotOpen
	}
	if err := os.Remove(j.path(id)); err != nil {
		return fmt.Errorf("fiscal journal: %w", err)
	}
	return atomicfile.SyncDir(j.dir)
}

func (j *FileJournal) Get(_ context.Context, id string) (Entry, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.read(id)
}

func (j *FileJournal) Pending(_ context.Context) ([]Pending, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	des, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("fiscal journal: %w", err)
	}
	var out []Pending
	for _, de := range des {
		name := de.Name()
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		raw, err := hex.DecodeString(strings.TrimSuffix(name, ".json"))
		if err != nil {
			continue
		}
		e, err := j.read(string(raw))
		if err != nil {
			return nil, err
		}
		if !e.Done {
			out = append(out, e.Op)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Started.Before(out[b].Started) })
	return out, nil
}
