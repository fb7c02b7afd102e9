package sale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"kassa-agent/fiscal"
	"kassa-agent/queue"
)

const collFiscalOps = "fiscal_ops"

// Journal is the register's write-ahead journal kept in the agent's store, so a
// receipt's recovery record lives in the same file as the payment it belongs to.
type Journal struct{ s *queue.Store }

// NewJournal keeps the register's journal in s.
func NewJournal(s *queue.Store) *Journal { return &Journal{s: s} }

var _ fiscal.Journal = (*Journal)(nil)

func getEntry(r interface {
	Get(coll, id string) ([]byte, error)
}, id string) (fiscal.Entry, error) {
	b, err := r.Get(collFiscalOps, id)
	if errors.Is(err, queue.ErrNotFound) {
		return fiscal.Entry{}, fiscal.ErrJournalNotFound
	}
	if err != nil {
		return fiscal.Entry{}, fmt.Errorf("fiscal journal: %w", err)
	}
	var e fiscal.Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return fiscal.Entry{}, fmt.Errorf("fiscal journal: decode %s: %w", id, err)
	}
	return e, nil
}

func putEntry(tx *queue.Tx, e fiscal.Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return tx.Put(collFiscalOps, e.Op.ID, b)
}

// Begin records op as in progress, durably, before the register sees it.
func (j *Journal) Begin(ctx context.Context, op fiscal.Pending) error {
	if op.ID == "" {
		return errors.New("fiscal journal: empty id")
	}
	return j.s.Update(ctx, func(tx *queue.Tx) error {
		if _, err := getEntry(tx, op.ID); err == nil {
			return fiscal.ErrJournalExists
		} else if !errors.Is(err, fiscal.ErrJournalNotFound) {
			return err
		}
		return putEntry(tx, fiscal.Entry{Op: op})
	})
}

// Finish records the document of a pending op.
func (j *Journal) Finish(ctx context.Context, id string, doc fiscal.Document) error {
	return j.s.Update(ctx, func(tx *queue.Tx) error {
		e, err := getEntry(tx, id)
		if err != nil {
			return err
		}
		if e.Done {
			if e.Doc.FD == doc.FD && e.Doc.FP == doc.FP {
				return nil
			}
			return fmt.Errorf("%w: already finished with FD %d", fiscal.ErrJournalNotOpen, e.Doc.FD)
		}
		e.Done, e.Doc = true, doc
		return putEntry(tx, e)
	})
}

// Abort drops a pending op proved not to have produced a document.
func (j *Journal) Abort(ctx context.Context, id string) error {
	return j.s.Update(ctx, func(tx *queue.Tx) error {
		e, err := getEntry(tx, id)
		if err != nil {
			return err
		}
		if e.Done {
			return fiscal.ErrJournalNotOpen
		}
		return tx.Delete(collFiscalOps, id)
	})
}

// Get returns the entry for id.
func (j *Journal) Get(_ context.Context, id string) (fiscal.Entry, error) {
	var e fiscal.Entry
	err := j.s.View(func(r *queue.ReadTx) error {
		var err error
		e, err = getEntry(r, id)
		return err
	})
	return e, err
}

// Pending lists unfinished ops, oldest first.
func (j *Journal) Pending(_ context.Context) ([]fiscal.Pending, error) {
	var out []fiscal.Pending
	err := j.s.View(func(r *queue.ReadTx) error {
		return r.ForEach(collFiscalOps, func(id string, v []byte) error {
			var e fiscal.Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("fiscal journal: decode %s: %w", id, err)
			}
			if !e.Done {
				out = append(out, e.Op)
			}
			return nil
		})
	})
	sort.SliceStable(out, func(i, k int) bool { return out[i].Started.Before(out[k].Started) })
	return out, err
}
