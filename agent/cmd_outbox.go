package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"kassa-agent/agent/internal/config"
	"kassa-agent/queue"
)

const outboxUsage = `usage: kassa-agent outbox list [--all|--pending|--dropped] [--json] [--config FILE]
       kassa-agent outbox retry ID [--json] [--config FILE]
       kassa-agent outbox drop ID [--note TEXT] [--json] [--config FILE]`

// storeProbeTimeout is how long the commands wait for the store's lock before
// concluding that the agent runs and holds it.
const storeProbeTimeout = 500 * time.Millisecond

// outboxList is GET /v1/outbox's answer; direct mode builds the same shape.
type outboxList struct {
	outboxStatus
	Messages []outboxMessage `json:"messages"`
}

func cmdOutbox(args []string, out, errOut io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(errOut, outboxUsage)
		return exitUsage
	}
	sub := args[0]
	fs := flags("outbox "+sub, errOut)
	path := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON (the local API's shape)")
	var all, pending, dropped *bool
	var note *string
	switch sub {
	case "list":
		all = fs.Bool("all", false, "list every message")
		pending = fs.Bool("pending", false, "list messages waiting for delivery")
		dropped = fs.Bool("dropped", false, "list dropped messages, newest first")
	case "retry":
	case "drop":
		note = fs.String("note", "", "why it is dropped (kept with the record)")
	default:
		fmt.Fprintf(errOut, "kassa-agent outbox: unknown subcommand %q\n%s\n", sub, outboxUsage)
		return exitUsage
	}
	pos, code, ok := parseMixed(fs, args[1:])
	if !ok {
		return code
	}
	ob := outboxCmd{out: out, errOut: errOut, json: *asJSON}
	if sub == "list" {
		if len(pos) > 0 {
			fmt.Fprintf(errOut, "%s: unexpected argument %q\n", fs.Name(), pos[0])
			return exitUsage
		}
		filter := queue.FilterParked
		n := 0
		for f, set := range map[queue.Filter]bool{queue.FilterAll: *all, queue.FilterPending: *pending, queue.FilterDropped: *dropped} {
			if set {
				filter, n = f, n+1
			}
		}
		if n > 1 {
			fmt.Fprintf(errOut, "%s: give at most one of --all, --pending, --dropped\n", fs.Name())
			return exitUsage
		}
		return ob.run(*path, func(t outboxTarget) error { return ob.list(t, filter) })
	}
	if len(pos) != 1 {
		fmt.Fprintf(errOut, "%s: give one message id (see kassa-agent outbox list)\n", fs.Name())
		return exitUsage
	}
	id, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil {
		fmt.Fprintf(errOut, "%s: message id must be a number, not %q\n", fs.Name(), pos[0])
		return exitUsage
	}
	n := ""
	if note != nil {
		n = *note
	}
	return ob.run(*path, func(t outboxTarget) error { return ob.act(t, sub, id, n) })
}

// parseMixed parses flags given before, between or after positional
// arguments ("outbox retry 12 --config x"); the standard parser stops at the
// first positional one.
func parseMixed(fs *flag.FlagSet, args []string) (pos []string, code int, ok bool) {
	for {
		if code, ok := parse(fs, args); !ok {
			return nil, code, false
		}
		if fs.NArg() == 0 {
			return pos, 0, true
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// outboxTarget is where the outbox is: the store file itself, or the running
// agent that holds it.
type outboxTarget struct {
	store *queue.Store
	api   *localClient
}

type outboxCmd struct {
	out, errOut io.Writer
	json        bool
}

func (o outboxCmd) run(path string, do func(outboxTarget) error) int {
	cfg, err := config.Load(path)
	if err != nil {
		return fail(o.errOut, err)
	}
	t, closeFn, err := openOutbox(cfg)
	if err != nil {
		return fail(o.errOut, err)
	}
	defer closeFn()
	if err := do(t); err != nil {
		return fail(o.errOut, err)
	}
	return exitOK
}

// openOutbox opens the store, or, when the agent holds it, a client of the
// agent's API.
func openOutbox(cfg config.Config) (outboxTarget, func(), error) {
	p := cfg.StorePath()
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		// Opening would create an empty store; say what is going on instead.
		return outboxTarget{}, nil, fmt.Errorf("no store at %s: the agent has not run with this configuration yet", p)
	}
	st, err := queue.Open(p, queue.Options{OpenTimeout: storeProbeTimeout})
	if errors.Is(err, queue.ErrLocked) {
		c, cerr := newLocalClient(cfg)
		if cerr != nil {
			return outboxTarget{}, nil, fmt.Errorf("the agent is running (its store is locked), but: %w", cerr)
		}
		return outboxTarget{api: c}, func() {}, nil
	}
	if err != nil {
		return outboxTarget{}, nil, err
	}
	return outboxTarget{store: st}, func() { _ = st.Close() }, nil
}

func (o outboxCmd) list(t outboxTarget, filter queue.Filter) error {
	var l outboxList
	if t.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := t.api.call(ctx, "GET", "/v1/outbox?filter="+url.QueryEscape(string(filter)), &l); err != nil {
			return err
		}
	} else {
		st, err := storeOutboxStatus(t.store, 0)
		if err != nil {
			return err
		}
		st.ParkedMessages = nil
		ms, err := t.store.ListOutbox(filter, 500)
		if err != nil {
			return err
		}
		l = outboxList{outboxStatus: *st, Messages: make([]outboxMessage, 0, len(ms))}
		for _, m := range ms {
			l.Messages = append(l.Messages, messageView(m))
		}
	}
	if o.json {
		return writeJSON(o.out, l)
	}
	return writeOutboxText(o.out, l, filter, time.Now())
}

// act retries or drops one parked message and prints what the API would answer.
func (o outboxCmd) act(t outboxTarget, action string, id uint64, note string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var res json.RawMessage
	if t.api != nil {
		path := fmt.Sprintf("/v1/outbox/%d/%s", id, action)
		if note != "" {
			path += "?note=" + url.QueryEscape(note)
		}
		if err := t.api.call(ctx, "POST", path, &res); err != nil {
			var re *remoteError
			switch remoteCode(err) {
			case "not_found":
				return fmt.Errorf("no outbox message %d (see kassa-agent outbox list --all)", id)
			case "conflict":
				if errors.As(err, &re) && re.Message == damagedRetryMsg {
					return fmt.Errorf("message %d: its record is damaged; it cannot be retried, only dropped", id)
				}
				return fmt.Errorf("message %d is not parked; only parked messages can be retried or dropped", id)
			}
			return err
		}
	} else {
		var err error
		if action == "retry" {
			err = t.store.RetryParked(ctx, id)
		} else {
			if note == "" {
				note = "dropped with kassa-agent outbox drop"
			}
			err = t.store.DropParked(ctx, id, note)
		}
		switch {
		case errors.Is(err, queue.ErrNotFound):
			return fmt.Errorf("no outbox message %d (see kassa-agent outbox list --all)", id)
		case errors.Is(err, queue.ErrNotParked):
			return fmt.Errorf("message %d is not parked; only parked messages can be retried or dropped", id)
		case errors.Is(err, queue.ErrDamagedMessage):
			return fmt.Errorf("message %d: its record is damaged; it cannot be retried, only dropped", id)
		case err != nil:
			return err
		}
		var v any = map[string]any{"id": id, "status": "gone"}
		m, err := t.store.GetMessage(id)
		if err == nil {
			v = messageView(m)
		} else if !errors.Is(err, queue.ErrNotFound) {
			return err
		}
		if res, err = json.Marshal(v); err != nil {
			return err
		}
	}
	if o.json {
		var v any
		if err := json.Unmarshal(res, &v); err != nil {
			return err
		}
		return writeJSON(o.out, v)
	}
	where := "the agent delivers it now"
	if t.api == nil {
		where = "it is delivered when the agent runs"
	}
	if action == "retry" {
		fmt.Fprintf(o.out, "message %d is back in line with its attempts reset; %s\n", id, where)
	} else {
		fmt.Fprintf(o.out, "message %d dropped for good; the record stays in kassa-agent outbox list --dropped\n", id)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeOutboxText(w io.Writer, l outboxList, filter queue.Filter, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(l.Messages) == 0 {
		fmt.Fprintf(tw, "no %s messages\n", map[queue.Filter]string{queue.FilterAll: "outbox", queue.FilterPending: "pending",
			queue.FilterParked: "parked", queue.FilterDropped: "dropped"}[filter])
	} else {
		last := "PARKED REASON / LAST ERROR"
		if filter == queue.FilterDropped {
			last = "DROPPED / NOTE"
		}
		fmt.Fprintf(tw, "ID\tKIND\tKEY\tATTEMPTS\tAGE\t%s\n", last)
		for _, m := range l.Messages {
			why := m.LastError
			switch {
			case filter == queue.FilterDropped:
				why = m.ParkedReason // says when, the note and why it was parked
			case m.Parked:
				why = "parked: " + parkedWhy(m)
			}
			age := "-" // a damaged record has no creation time
			if !m.Created.IsZero() {
				age = ago(now.Sub(m.Created))
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", m.ID, m.Kind, clip(m.Key, 32), m.Attempts, age, dash(clip(oneLine(why), 120)))
		}
		if len(l.Messages) == 500 {
			fmt.Fprintln(tw, "(the first 500 only)")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	oldest := ""
	if l.Pending > 0 && !l.OldestPending.IsZero() {
		oldest = fmt.Sprintf(" (oldest %s)", ago(time.Duration(l.OldestPendingAge*float64(time.Second))))
	}
	_, err := fmt.Fprintf(w, "\npending %d%s, parked %d, dropped %d\n", l.Pending, oldest, l.Parked, l.Dropped)
	return err
}

// parkedWhy is why a message was parked: the dispatcher's reason (permanent
// error, too many attempts, too old) and the provider's last answer.
func parkedWhy(m outboxMessage) string {
	if m.LastError == "" {
		return m.ParkedReason
	}
	return m.ParkedReason + ": " + m.LastError
}

// ago formats a duration the way a person reads a message's age.
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d.Seconds())))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
