package sale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"kassa-agent/fiscal"
	"kassa-agent/queue"
)

const collFiscalOps = "fiscal_ops"

// collFiscalOpsPending indexes the unfinished entries (id → nothing): the
// register asks for them before every document, and a till's journal holds
// every document it ever made. Begin, Finish and Abort keep it in their own
// transactions; the first Pending of a process rebuilds it for a store
// written before it existed.
const collFiscalOpsPending = "fiscal_ops_pending"

// Journal is the register's write-ahead journal kept in the agent's store, so a
// receipt's recovery record lives in the same file as the payment it belongs to.
type Journal struct {
	s *queue.Store

	mu      sync.Mutex
	indexed bool // the pending index was checked against the entries
}

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
		if err := putEntry(tx, fiscal.Entry{Op: op}); err != nil {
			return err
		}
		if err := tx.Put(collFiscalOpsPending, op.ID, nil); err != nil {
			return err
		}
		return receiptOpBegun(tx, op.ID, j.s.Clock().Now())
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
		if err := putEntry(tx, e); err != nil {
			return err
		}
		if err := tx.Delete(collFiscalOpsPending, id); err != nil {
			return err
		}
		return receiptOpDone(tx, id, doc, j.s.Clock().Now())
	})
}

// A POS receipt operation (ops.go) shares its id with its journal entry, and
// its states follow the entry's in the entry's own transaction: printing from
// Begin (the FN's last FD is recorded; the register may have the document),
// done with the document from Finish. One commit each instead of two, on the
// path every receipt takes. Other ids (payments, register operations) have no
// receipt operation and are left alone.

func receiptOpBegun(tx *queue.Tx, id string, now time.Time) error {
	op, err := receiptOp(tx, id)
	if op == nil || err != nil {
		return err
	}
	op.State, op.Error = OpPrinting, nil
	op.Attempts++
	op.Version++
	op.Updated = now
	return putOp(tx, op)
}

func receiptOpDone(tx *queue.Tx, id string, doc fiscal.Document, now time.Time) error {
	op, err := receiptOp(tx, id)
	if op == nil || err != nil || op.request == nil {
		return err
	}
	op.State, op.Receipt, op.Error = OpDone, receiptResult(op.request, doc), nil
	op.Version++
	op.Updated = now
	return putOp(tx, op)
}

// receiptOp is the unsettled POS receipt operation id, or nil.
func receiptOp(tx *queue.Tx, id string) (*Operation, error) {
	b, err := tx.Get(collOps, id)
	if errors.Is(err, queue.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	op, err := decodeOp(b)
	if err != nil || op.Kind != "receipt" || !opOpen(op.State) {
		return nil, err
	}
	return op, nil
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
		if err := tx.Delete(collFiscalOps, id); err != nil {
			return err
		}
		return tx.Delete(collFiscalOpsPending, id)
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
func (j *Journal) Pending(ctx context.Context) ([]fiscal.Pending, error) {
	if err := j.index(ctx); err != nil {
		return nil, err
	}
	var out []fiscal.Pending
	err := j.s.View(func(r *queue.ReadTx) error {
		return r.Scan(collFiscalOpsPending, queue.ScanOptions{}, func(id string, _ []byte) error {
			e, err := getEntry(r, id)
			if errors.Is(err, fiscal.ErrJournalNotFound) {
				return nil
			}
			if err != nil {
				return err
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

// index makes the pending index agree with the entries, once per process.
func (j *Journal) index(ctx context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.indexed {
		return nil
	}
	err := j.s.Update(ctx, func(tx *queue.Tx) error {
		return reindex(tx, collFiscalOps, collFiscalOpsPending, func(id string, v []byte) (bool, error) {
			var e fiscal.Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return false, fmt.Errorf("decode %s: %w", id, err)
			}
			return !e.Done, nil
		})
	})
	if err != nil {
		return fmt.Errorf("fiscal journal: index: %w", err)
	}
	j.indexed = true
	return nil
}
