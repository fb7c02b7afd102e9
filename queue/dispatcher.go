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
	// Clock is the dispatcher's clock; nil means Now if set, else the
	// store's clock. Backoff waits run on its monotonic side, so a wall
	// clock step does not shorten or stretch them.
	Clock Clock
	// Now, kept for older callers, sets only the wall clock (the monotonic
	// one is the system's). Clock takes precedence.
	Now func() time.Time
	// Jitter returns a random duration in [0, max]; nil uses math/rand/v2.
	// Tests inject it to check the backoff bounds.
	Jitter func(max time.Duration) time.Duration
}

// Dispatcher delivers outbox messages through handlers registered per kind:
// strictly in order per key, concurrently across keys, with exponential
// backoff and full jitter. Only one Dispatcher should run per Store.
type Dispatcher struct {
	s     *Store
	opts  DispatcherOptions
	log   *slog.Logger
	clock Clock

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
	return &Dispatcher{s: s, opts: opts, log: log, clock: pickClock(opts.Clock, opts.Now, s.clock),
		handlers: make(map[string]Handler), ready: make(chan struct{})}
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

// outcome is a finished attempt waiting to be recorded.
type outcome struct {
	dm   dueMessage
	err  error         // nil: delivered, mark done
	at   time.Time     // when the attempt failed, wall clock (for the record)
	mono time.Duration // and on the monotonic clock (for the backoff)
}

// settled is a message whose outcome is recorded (or had nothing to
// record). retry, when set, is the monotonic deadline of its next attempt.
type settled struct {
	id    uint64
	retry time.Duration
	wait  bool
}

// Sizes of the dispatcher's pipeline. In flight are messages read from the
// due index and not yet durably recorded: waiting for a worker, in a
// handler, or waiting for their outcome's commit. A message waiting for its
// commit costs only a little memory, so many may wait: the more wait, the
// more outcomes share one transaction, which is what bounds the drain rate
// of a backlog.
const (
	inflightPerWorker = 32
	maxOutcomeBatch   = 1024 // outcomes per transaction at most
	minCommitInterval = 5 * time.Millisecond
	lingerAbove       = 16 // outcomes in the previous commit
)

// Run delivers messages until ctx is done, then waits for deliveries in
// flight to end and returns nil. It returns an error only if the store
// fails. Messages are read from disk a few at a time, never the whole
// backlog.
//
// Workers are long-lived goroutines. A worker is free as soon as its
// handler returns; the message stays "in flight" (its key blocked) until
// its outcome is committed, so the next message of the key never goes out
// before the previous one is durably recorded, while other keys need not
// wait for that fsync. Outcomes, delivered or failed, are recorded by one
// committer goroutine that takes all that have finished meanwhile into one
// transaction.
func (d *Dispatcher) Run(ctx context.Context) error {
	workers := d.opts.Workers
	maxInflight := inflightPerWorker * workers
	inflight := make(map[uint64]bool, maxInflight)
	var ready []dueMessage // read ahead from the due index, counted in inflight
	// settledC carries the messages whose outcome is recorded (or had
	// nothing to record): they leave inflight. Every in-flight id is sent
	// once at most, so these sends never block, even after Run stopped
	// reading.
	settledC := make(chan []settled, maxInflight)
	// waits holds the monotonic deadlines of messages backing off in this
	// run. The due index holds the same times on the wall clock, for a
	// restart and for people; within a run only these count, so a wall
	// clock step neither fires a message early nor holds it for hours.
	waits := make(map[uint64]time.Duration)
	outcomes := make(chan outcome, maxInflight)
	// work holds a message for each worker, so a worker goes on at once
	// when its handler returns instead of waiting for this loop to be
	// scheduled (on a busy machine that wait was 4% of a 5 ms delivery).
	work := make(chan dueMessage, workers)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		d.commitOutcomes(ctx, outcomes, settledC)
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for dm := range work {
				if o, record := d.attempt(ctx, dm); record {
					outcomes <- o
				} else {
					settledC <- []settled{{id: dm.id}}
				}
			}
		})
	}
	defer func() {
		close(work)
		wg.Wait()
		close(outcomes)
		<-committed
	}()

	readyOnce := false
	// rescan: something may have become due since the last scan. Only a
	// commit (ours or an enqueue), the timer, or a short scan can change
	// that; a handler returning cannot.
	rescan := true
	next, waiting := time.Duration(0), false // monotonic deadline of the next due message
	settle := func(ss []settled) {
		for _, x := range ss {
			delete(inflight, x.id)
			if x.wait {
				waits[x.id] = x.retry
			}
		}
		rescan = true
	}
	for {
		// Refill the read-ahead only when it has run dry, so the due index
		// (which starts with everything in flight) is walked once per batch
		// of deliveries rather than once per delivery.
		if len(ready) == 0 && rescan && len(inflight) < maxInflight {
			mono := d.clock.Mono()
			msgs, bad, wait, err := d.scan(d.clock.Now(), mono, min(2*workers, maxInflight-len(inflight)), inflight, waits)
			if err == nil && len(bad) > 0 {
				err = d.repair(ctx, bad, inflight)
				wait = 0 // what it made due is read at once
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("queue: dispatcher: %w", err)
			}
			next, waiting, rescan = mono+wait, wait >= 0, false
			for _, m := range msgs {
				inflight[m.id] = true
			}
			ready = msgs
		}
	fill:
		for len(ready) > 0 {
			select {
			case work <- ready[0]:
				ready = ready[1:]
			default:
				break fill
			}
		}
		if !readyOnce {
			readyOnce = true
			close(d.ready)
		}
		// With messages ready, wait for room in work; without, for the
		// next one to become due.
		var workC chan<- dueMessage
		var head dueMessage
		var timerC <-chan time.Time
		if len(ready) > 0 {
			workC, head = work, ready[0]
		} else {
			ready = nil // let the read-ahead's array go
			// With inflight full no scan can run: a settle wakes the loop.
			if waiting && len(inflight) < maxInflight {
				if left := next - d.clock.Mono(); left > 0 {
					timerC = d.clock.After(left)
				} else {
					timerC = fired
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case workC <- head:
			ready = ready[1:]
		case ss := <-settledC:
			settle(ss)
		case <-d.s.wake:
			rescan = true
		case <-timerC:
			rescan = true
		}
		// Collect every settled id before the next scan.
	drain:
		for {
			select {
			case ss := <-settledC:
				settle(ss)
			default:
				break drain
			}
		}
	}
}

// attempt runs the handler for dm once. It reports whether the outcome is
// to be recorded: not when the message could not be read or is parked, and
// not when the attempt failed because the dispatcher is stopping (that
// attempt does not count; the message goes out again after restart).
func (d *Dispatcher) attempt(ctx context.Context, dm dueMessage) (outcome, bool) {
	if ctx.Err() != nil {
		return outcome{}, false
	}
	if dm.m.Parked {
		return outcome{}, false
	}
	d.mu.RLock()
	h := d.handlers[dm.m.Kind]
	d.mu.RUnlock()
	var herr error
	if h == nil {
		herr = fmt.Errorf("no handler registered for kind %q", dm.m.Kind)
	} else {
		hctx, cancel := context.WithTimeout(ctx, d.opts.HandlerTimeout)
		herr = callHandler(hctx, h, dm.m)
		cancel()
	}
	if herr != nil && ctx.Err() != nil {
		return outcome{}, false
	}
	o := outcome{dm: dm, err: herr}
	if herr != nil {
		o.at, o.mono = d.clock.Now(), d.clock.Mono()
	}
	return o, true
}

// failure is how a failed attempt is recorded.
type failure struct {
	park   bool
	reason string
	delay  time.Duration
}

// judge decides what a failed attempt of m at now leads to.
func (d *Dispatcher) judge(m *Message, herr error, now time.Time) failure {
	attempts := m.Attempts + 1
	ageFrom := m.Created
	if !m.RetriedAt.IsZero() {
		ageFrom = m.RetriedAt
	}
	f := failure{delay: d.opts.Jitter(d.Backoff(attempts))}
	switch {
	case IsPermanent(herr):
		f.park, f.reason = true, "permanent error"
	case d.opts.MaxAttempts > 0 && attempts >= d.opts.MaxAttempts:
		f.park, f.reason = true, fmt.Sprintf("failed %d times (limit %d)", attempts, d.opts.MaxAttempts)
	case d.opts.MaxAge > 0 && now.Sub(ageFrom) >= d.opts.MaxAge:
		f.park, f.reason = true, fmt.Sprintf("still failing after %s (limit %s)", now.Sub(ageFrom).Round(time.Second), d.opts.MaxAge)
	}
	return f
}

// commitOutcomes records finished attempts until outcomes is closed: it
// takes every outcome waiting into one transaction, each isolated so one
// that fails (a damaged record) does not hold back the others, and reports
// each as recorded only once the transaction is durable.
func (d *Dispatcher) commitOutcomes(ctx context.Context, outcomes <-chan outcome, settledC chan<- []settled) {
	// Recording must not be cut short by shutdown: a delivered message
	// left unmarked would only be sent again, and a lost failure record
	// would skip its backoff.
	uctx := context.WithoutCancel(ctx)
	batch := make([]outcome, 0, maxOutcomeBatch)
	errs := make([]error, maxOutcomeBatch)
	fails := make([]failure, maxOutcomeBatch)
	updated := make([]Message, maxOutcomeBatch)
	var last time.Time // start of the previous commit
	lastN := 0         // and how many outcomes it carried
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for o := range outcomes {
		batch = append(batch[:0], o)
		// Under a heavy flow (the previous commit carried many outcomes),
		// commit at most every minCommitInterval so that each commit's
		// fixed cost (two fsyncs, the freelist, the meta page) is shared
		// by more outcomes: a 100 000 backlog took 1 900 commits without
		// this and 500 with it. Otherwise commit at once: a lone delivery
		// (the usual case on a till) never waits.
		var wait <-chan time.Time
		if left := minCommitInterval - time.Since(last); left > 0 && lastN >= lingerAbove {
			linger.Reset(left)
			wait = linger.C
		}
	more:
		for len(batch) < maxOutcomeBatch {
			select {
			case o, ok := <-outcomes:
				if !ok {
					break more
				}
				batch = append(batch, o)
				continue
			default:
			}
			if wait == nil {
				break
			}
			select {
			case o, ok := <-outcomes:
				if !ok {
					break more
				}
				batch = append(batch, o)
			case <-wait:
				wait = nil
			}
		}
		linger.Stop()
		last, lastN = time.Now(), len(batch)
		for i, o := range batch {
			fails[i] = failure{}
			if o.err != nil {
				fails[i] = d.judge(&o.dm.m, o.err, o.at)
			}
		}
		err := d.s.Update(uctx, func(tx *Tx) error {
			for i, o := range batch {
				if o.err == nil {
					errs[i] = tx.isolate(func() error { return tx.markDone(o.dm.id) })
				} else {
					f := fails[i]
					errs[i] = tx.isolate(func() error {
						var err error
						updated[i], err = tx.markFailed(o.dm.id, o.err.Error(), f.park, f.reason, o.at, f.delay)
						return err
					})
				}
				if errors.Is(errs[i], ErrAborted) {
					return errs[i]
				}
			}
			return nil
		})
		ss := make([]settled, len(batch))
		for i, o := range batch {
			err := cmp.Or(err, errs[i])
			d.logOutcome(o, fails[i], updated[i], err)
			ss[i] = settled{id: o.dm.id}
			if o.err != nil && err == nil && !fails[i].park {
				ss[i].retry, ss[i].wait = o.mono+fails[i].delay, true
			}
		}
		settledC <- ss
		clear(updated[:len(batch)])
	}
}

func (d *Dispatcher) logOutcome(o outcome, f failure, updated Message, err error) {
	m := &o.dm.m
	switch {
	case o.err == nil && err != nil:
		d.log.Error("outbox: marking message done failed; it will be delivered again", "msg_id", o.dm.id, "err", err)
	case o.err == nil:
	case err != nil:
		d.log.Error("outbox: recording failed attempt failed", "msg_id", o.dm.id, "kind", m.Kind, "key", m.Key, "err", err)
	case f.park:
		d.log.Error("outbox: message PARKED", "msg_id", o.dm.id, "kind", m.Kind, "key", m.Key, "attempts", updated.Attempts, "reason", f.reason, "last_error", o.err)
	default:
		d.log.Warn("outbox: delivery failed, will retry", "msg_id", o.dm.id, "kind", m.Kind, "key", m.Key, "attempts", updated.Attempts, "retry_in", f.delay, "err", o.err)
	}
}

// dueMessage is a message read by scan.
type dueMessage struct {
	id uint64
	m  Message
}

// badEntry is a due-index entry whose message is missing or undecodable.
type badEntry struct {
	id  uint64
	due []byte // the entry's key
}

// scan returns up to free due messages not already in flight, the due
// entries it found unreadable, and how long until the earliest message
// not yet due becomes due (-1 if none waits; 0 if more is due than was
// taken), measured on the monotonic clock.
//
// A message is due when its deadline in waits has passed; one without a
// deadline there (enqueued, retried by a technician, or left by an
// earlier run) when its wall-clock due time has. A wall due time still
// ahead is converted once into a deadline in waits, no further ahead than
// the message's own wait could be (its backoff bound, or its Enqueue
// delay): after a restart with a clock that went back, a message waits at
// most that long; with a clock that went forward, it goes at once.
// Because of these deadlines the due index is walked to its end, not to
// the first entry ahead of the wall clock; it holds one entry per key
// with messages waiting, and entries in flight or backing off are passed
// over with a map look-up.
func (d *Dispatcher) scan(now time.Time, mono time.Duration, free int, inflight map[uint64]bool, waits map[uint64]time.Duration) ([]dueMessage, []badEntry, time.Duration, error) {
	var msgs []dueMessage
	var bad []badEntry
	wait := time.Duration(-1)
	nowKey := timeKey(now)
	err := d.s.View(func(rt *ReadTx) error {
		c := rt.btx.Bucket(bOutDue).Cursor()
		mc := rt.btx.Bucket(bOutMsg).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != 16 {
				return fmt.Errorf("damaged due index entry")
			}
			id := binary.BigEndian.Uint64(k[8:])
			if inflight[id] {
				continue
			}
			deadline, tracked := waits[id]
			if at := binary.BigEndian.Uint64(k); !tracked && at > nowKey {
				m, err := messageAt(mc, id)
				if err != nil {
					bad = append(bad, badEntry{id: id, due: clone(k)})
					continue
				}
				deadline, tracked = mono+min(time.Duration(at-nowKey), d.ownWait(&m)), true
				waits[id] = deadline
			}
			if tracked && deadline > mono {
				if left := deadline - mono; wait < 0 || left < wait {
					wait = left
				}
				continue
			}
			if len(msgs) == free {
				wait = 0 // more is due: come back as soon as a worker frees up
				return nil
			}
			delete(waits, id)
			// Read in the same snapshot, saving a transaction per message:
			// the due index holds only heads of keys that are not parked,
			// and only this dispatcher changes a due message, so what is
			// read here is what gets delivered.
			m, err := messageAt(mc, id)
			if err != nil {
				bad = append(bad, badEntry{id: id, due: clone(k)})
				continue
			}
			msgs = append(msgs, dueMessage{id: id, m: m})
		}
		return nil
	})
	return msgs, bad, wait, err
}

// ownWait is the longest m can have been meant to wait from when its due
// time was set: the backoff bound after its last failure, or for a message
// not yet attempted the delay it was enqueued with.
func (d *Dispatcher) ownWait(m *Message) time.Duration {
	if m.Attempts > 0 {
		return d.Backoff(m.Attempts)
	}
	from := m.Created
	if m.RetriedAt.After(from) {
		from = m.RetriedAt
	}
	return max(m.NextAttempt.Sub(from), 0)
}

// repair parks the undecodable messages scan found, or removes the due
// entries of missing ones, so that neither is met again and their keys go
// on; each is logged once. An entry that cannot be repaired (its
// transaction part failed) is logged and left out of this run by keeping
// it in flight. An error is returned only if the store failed.
func (d *Dispatcher) repair(ctx context.Context, bad []badEntry, inflight map[uint64]bool) error {
	type result struct {
		m                Message
		damaged, changed bool
		err              error
	}
	res := make([]result, len(bad))
	now := d.clock.Now()
	err := d.s.Update(ctx, func(tx *Tx) error {
		for i, b := range bad {
			r := &res[i]
			r.err = tx.isolate(func() error {
				var err error
				r.m, r.damaged, r.changed, err = tx.parkDamaged(b.id, b.due, now)
				return err
			})
			if errors.Is(r.err, ErrAborted) {
				return r.err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, r := range res {
		switch {
		case r.err != nil:
			inflight[bad[i].id] = true
			d.log.Error("outbox: message record is unreadable and could not be parked; it is skipped until restart", "msg_id", bad[i].id, "err", r.err)
		case r.damaged:
			d.log.Error("outbox: message record is undecodable: PARKED with its bytes, its key's later messages go on",
				"msg_id", r.m.ID, "key", r.m.Key, "bytes", len(r.m.Raw), "err", r.m.LastError)
		case r.changed:
			d.log.Error("outbox: due entry names a missing message; entry removed", "msg_id", bad[i].id, "key", r.m.Key)
		}
	}
	return nil
}

func callHandler(ctx context.Context, h Handler, m Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h(ctx, m)
}
