package queue

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Handler delivers one message. Returning nil marks it done (removed);
// an error wrapped with Permanent parks it at once; any other error is
// transient and the message is retried with backoff. The ctx is cancelled
// on shutdown and after DispatcherOptions.HandlerTimeout.
type Handler func(ctx context.Context, m Message) error

// PermanentError marks a failure that retrying cannot fix (e.g. the
// provider rejected the request as invalid).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so the dispatcher parks the message instead of
// retrying it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// DispatcherOptions tune delivery. Zero values take the defaults shown.
type DispatcherOptions struct {
	BaseDelay      time.Duration // first retry bound (1s)
	MaxDelay       time.Duration // cap on the retry bound (5m)
	MaxAttempts    int           // park after this many failures; 0 = no limit
	MaxAge         time.Duration // park a failing message older than this (24h); <0 = no limit
	Workers        int           // deliveries in flight at once, across keys (4)
	HandlerTimeout time.Duration // per attempt (30s)
	Logger         *slog.Logger
	// Now is the clock; nil uses the store's clock.
	Now func() time.Time
	// Jitter returns a random duration in [0, max]; nil uses math/rand/v2.
	// Tests inject it to check the backoff bounds.
	Jitter func(max time.Duration) time.Duration
}

// Dispatcher delivers outbox messages through handlers registered per kind:
// strictly in order per key, concurrently across keys, with exponential
// backoff and full jitter. Only one Dispatcher should run per Store.
type Dispatcher struct {
	s    *Store
	opts DispatcherOptions
	log  *slog.Logger

	mu       sync.RWMutex
	handlers map[string]Handler

	ready chan struct{}
}

// NewDispatcher prepares a dispatcher over s. Register handlers, then Run.
func NewDispatcher(s *Store, opts DispatcherOptions) *Dispatcher {
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = time.Second
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 5 * time.Minute
	}
	if opts.MaxDelay < opts.BaseDelay {
		opts.MaxDelay = opts.BaseDelay
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = 24 * time.Hour
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.HandlerTimeout <= 0 {
		opts.HandlerTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = s.now
	}
	if opts.Jitter == nil {
		opts.Jitter = func(max time.Duration) time.Duration {
			if max <= 0 {
				return 0
			}
			return rand.N(max + 1)
		}
	}
	log := opts.Logger
	if log == nil {
		log = s.log
	}
	return &Dispatcher{s: s, opts: opts, log: log, handlers: make(map[string]Handler), ready: make(chan struct{})}
}

// Register sets the handler for kind. Register every kind before Run:
// a message whose kind has no handler fails (transiently) with a clear
// LastError until one is registered.
func (d *Dispatcher) Register(kind string, h Handler) {
	d.mu.Lock()
	d.handlers[kind] = h
	d.mu.Unlock()
}

// Ready is closed once Run has made its first pass over the outbox.
func (d *Dispatcher) Ready() <-chan struct{} { return d.ready }

// Backoff returns the upper bound of the delay after the n-th failure
// (n >= 1): min(MaxDelay, BaseDelay * 2^(n-1)). The delay used is a random
// value in [0, bound] ("full jitter").
func (d *Dispatcher) Backoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	bound := d.opts.BaseDelay
	for i := 1; i < n; i++ {
		if bound >= d.opts.MaxDelay/2 {
			return d.opts.MaxDelay
		}
		bound *= 2
	}
	return min(bound, d.opts.MaxDelay)
}

type result struct {
	id       uint64
	recorded bool // false: the handler returned (slot free); true: outcome committed
}

// Sizes of the dispatcher's pipeline. In flight are messages read from the
// due index and not yet durably recorded: waiting for a worker, in a
// handler, or waiting for their mark-done commit. A message waiting for its
// commit costs only an id, so many may wait: the more wait, the more
// mark-dones share one transaction, which is what bounds the drain rate of
// a backlog.
const (
	inflightPerWorker = 32
	maxDoneBatch      = 1024 // mark-dones per transaction at most
)

// Run delivers messages until ctx is done, then waits for deliveries in
// flight to end and returns nil. It returns an error only if the store
// fails. Messages are read from disk a few at a time, never the whole
// backlog.
//
// A worker slot is freed as soon as a handler returns; the message stays
// "in flight" (its key blocked) until its outcome is committed, so the next
// message of the key never goes out before the previous one is durably
// done, while other keys need not wait for that fsync. Successful
// deliveries are marked done by one committer goroutine that takes all
// that have finished meanwhile into one transaction.
func (d *Dispatcher) Run(ctx context.Context) error {
	workers := d.opts.Workers
	maxInflight := inflightPerWorker * workers
	inflight := make(map[uint64]bool, maxInflight)
	var ready []dueMessage // read ahead from the due index, counted in inflight
	active := 0
	// Each in-flight message sends at most two results, so these sends
	// never block, even after Run stopped reading.
	results := make(chan result, 2*maxInflight)
	done := make(chan uint64, maxInflight)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		d.commitDone(ctx, done, results)
	}()
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		close(done)
		<-committed
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	readyOnce := false
	// rescan: something may have become due since the last scan. Only a
	// commit (ours or an enqueue), the timer, or a short scan can change
	// that; a handler returning cannot.
	rescan := true
	var next time.Time
	handle := func(r result) {
		if r.recorded {
			delete(inflight, r.id)
			rescan = true
		} else {
			active--
		}
	}
	for {
		// Refill the read-ahead only when it has run dry, so the due index
		// (which starts with everything in flight) is walked once per batch
		// of deliveries rather than once per delivery.
		if len(ready) == 0 && rescan && len(inflight) < maxInflight {
			now := d.opts.Now()
			msgs, nextAt, err := d.scan(now, min(2*workers, maxInflight-len(inflight)), inflight)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("queue: dispatcher: %w", err)
			}
			next, rescan = nextAt, false
			for _, m := range msgs {
				inflight[m.id] = true
			}
			ready = msgs
		}
		for ; active < workers && len(ready) > 0; ready = ready[1:] {
			m := ready[0]
			active++
			wg.Add(1)
			go func() {
				defer wg.Done()
				if d.deliver(ctx, m, func() { results <- result{id: m.id} }) {
					done <- m.id // commitDone records it
				} else {
					results <- result{id: m.id, recorded: true}
				}
			}()
		}
		if len(ready) == 0 {
			ready = nil // let the read-ahead's array go
		}
		if !readyOnce {
			readyOnce = true
			close(d.ready)
		}
		var timerC <-chan time.Time
		if !next.IsZero() && len(ready) == 0 {
			timer.Reset(max(next.Sub(d.opts.Now()), 0))
			timerC = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case r := <-results:
			handle(r)
		case <-d.s.wake:
			rescan = true
		case <-timerC:
			rescan = true
		}
		timer.Stop()
		// Collect every finished delivery before the next scan.
	drain:
		for {
			select {
			case r := <-results:
				handle(r)
			default:
				break drain
			}
		}
	}
}

// commitDone marks delivered messages done until done is closed: it takes
// every id waiting into one transaction, each mark-done isolated so one
// that fails (a damaged record) does not hold back the others, and reports
// each as recorded only once the transaction is durable.
func (d *Dispatcher) commitDone(ctx context.Context, done <-chan uint64, results chan<- result) {
	// Recording must not be cut short by shutdown: a delivered message
	// left unmarked would only be sent again, but there is no need to.
	uctx := context.WithoutCancel(ctx)
	batch := make([]uint64, 0, maxDoneBatch)
	errs := make([]error, maxDoneBatch)
	for id := range done {
		batch = append(batch[:0], id)
	more:
		for len(batch) < maxDoneBatch {
			select {
			case id, ok := <-done:
				if !ok {
					break more
				}
				batch = append(batch, id)
			default:
				break more
			}
		}
		err := d.s.Update(uctx, func(tx *Tx) error {
			for i, id := range batch {
				errs[i] = tx.isolate(func() error { return tx.markDone(id) })
				if errors.Is(errs[i], ErrAborted) {
					return errs[i]
				}
			}
			return nil
		})
		for i, id := range batch {
			if e := cmp.Or(err, errs[i]); e != nil {
				d.log.Error("outbox: marking message done failed; it will be delivered again", "msg_id", id, "err", e)
			}
			results <- result{id: id, recorded: true}
		}
	}
}

// dueMessage is a message read by scan, or why it could not be read.
type dueMessage struct {
	id  uint64
	m   Message
	err error
}

// scan returns up to free due messages not already in flight, and when the
// earliest not-yet-due message becomes due (zero if none waits; now if more
// is due than was taken).
func (d *Dispatcher) scan(now time.Time, free int, inflight map[uint64]bool) ([]dueMessage, time.Time, error) {
	var msgs []dueMessage
	var next time.Time
	nowKey := timeKey(now)
	err := d.s.View(func(rt *ReadTx) error {
		c := rt.btx.Bucket(bOutDue).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != 16 {
				return fmt.Errorf("damaged due index entry")
			}
			at := binary.BigEndian.Uint64(k)
			if at > nowKey {
				next = time.Unix(0, int64(at))
				return nil
			}
			id := binary.BigEndian.Uint64(k[8:])
			if inflight[id] {
				continue
			}
			if len(msgs) == free {
				next = now // more is due: come back as soon as a worker frees up
				return nil
			}
			// Read in the same snapshot, saving a transaction per message:
			// the due index holds only heads of keys that are not parked,
			// and only this dispatcher changes a due message, so what is
			// read here is what gets delivered.
			m, err := rt.message(id)
			msgs = append(msgs, dueMessage{id: id, m: m, err: err})
		}
		return nil
	})
	return msgs, next, err
}

// deliver runs one attempt. A failure it records durably itself; a success
// it leaves to the caller to mark done, reporting true. handlerDone is
// called exactly once, when the handler part is over.
func (d *Dispatcher) deliver(ctx context.Context, dm dueMessage, handlerDone func()) (delivered bool) {
	id, m, err := dm.id, dm.m, dm.err
	released := false
	release := func() {
		if !released {
			released = true
			handlerDone()
		}
	}
	defer release()
	if err != nil {
		if !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
			d.log.Error("outbox: reading message failed", "msg_id", id, "err", err)
		}
		return
	}
	if m.Parked {
		return
	}
	d.mu.RLock()
	h := d.handlers[m.Kind]
	d.mu.RUnlock()

	var herr error
	if h == nil {
		herr = fmt.Errorf("no handler registered for kind %q", m.Kind)
	} else {
		hctx, cancel := context.WithTimeout(ctx, d.opts.HandlerTimeout)
		herr = callHandler(hctx, h, m)
		cancel()
	}
	release()
	if herr != nil && ctx.Err() != nil {
		// Shutting down: this attempt does not count; the message is
		// delivered again after restart.
		return
	}
	if herr == nil {
		return true
	}
	// Recording the failure must not be cut short by shutdown: a lost
	// failure record would skip its backoff.
	uctx := context.WithoutCancel(ctx)
	now := d.opts.Now()
	attempts := m.Attempts + 1
	park, reason := false, ""
	ageFrom := m.Created
	if !m.RetriedAt.IsZero() {
		ageFrom = m.RetriedAt
	}
	switch {
	case IsPermanent(herr):
		park, reason = true, "permanent error"
	case d.opts.MaxAttempts > 0 && attempts >= d.opts.MaxAttempts:
		park, reason = true, fmt.Sprintf("failed %d times (limit %d)", attempts, d.opts.MaxAttempts)
	case d.opts.MaxAge > 0 && now.Sub(ageFrom) >= d.opts.MaxAge:
		park, reason = true, fmt.Sprintf("still failing after %s (limit %s)", now.Sub(ageFrom).Round(time.Second), d.opts.MaxAge)
	}
	delay := d.opts.Jitter(d.Backoff(attempts))
	var updated Message
	err = d.s.Update(uctx, func(tx *Tx) error {
		var err error
		updated, err = tx.markFailed(id, herr.Error(), park, reason, now, delay)
		return err
	})
	switch {
	case err != nil:
		d.log.Error("outbox: recording failed attempt failed", "msg_id", id, "kind", m.Kind, "key", m.Key, "err", err)
	case park:
		d.log.Error("outbox: message PARKED", "msg_id", id, "kind", m.Kind, "key", m.Key, "attempts", updated.Attempts, "reason", reason, "last_error", herr)
	default:
		d.log.Warn("outbox: delivery failed, will retry", "msg_id", id, "kind", m.Kind, "key", m.Key, "attempts", updated.Attempts, "retry_in", delay, "err", herr)
	}
	return false
}

func callHandler(ctx context.Context, h Handler, m Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h(ctx, m)
}
