package sale

import (
	"encoding/json"
	"fmt"
	"time"

	"kassa-agent/payments"
	"kassa-agent/queue"
)

// Counts is what the metrics endpoint shows of the payments in the store.
type Counts struct {
	// ByState counts payments by provider, then state.
	ByState map[string]map[payments.State]int
	// ReceiptsOwed are payments whose money is taken and whose receipt has
	// not printed yet; OldestOwed is when the oldest of them was created.
	ReceiptsOwed int
	OldestOwed   time.Time
}

// countRecord is the part of a stored payment Counts reads: decoding only
// these fields keeps a scrape cheap on a store with years of sales.
type countRecord struct {
	Provider string         `json:"provider"`
	State    payments.State `json:"state"`
	Fiscal   struct {
		State string `json:"state"`
	} `json:"fiscal"`
	Created time.Time `json:"created_at"`
}

// Counts reads every stored payment once, in one read transaction.
func (e *Engine) Counts() (Counts, error) {
	c := Counts{ByState: map[string]map[payments.State]int{}}
	err := e.store.View(func(r *queue.ReadTx) error {
		return r.Scan(collPayments, queue.ScanOptions{}, func(id string, v []byte) error {
			var p countRecord
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("decode payment %s: %w", id, err)
			}
			m := c.ByState[p.Provider]
			if m == nil {
				m = map[payments.State]int{}
				c.ByState[p.Provider] = m
			}
			m[p.State]++
			if p.State.MoneyTaken() && p.Fiscal.State == FiscalPending {
				c.ReceiptsOwed++
				if c.OldestOwed.IsZero() || p.Created.Before(c.OldestOwed) {
					c.OldestOwed = p.Created
				}
			}
			return nil
		})
	})
	return c, err
}
