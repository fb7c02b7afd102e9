package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"kassa-agent/agent/internal/config"
	"kassa-agent/queue"
)

// fillOutbox writes messages into a closed store the way the dispatcher leaves
// them: `parked` messages the provider rejected for good (parked), and
// `failing` ones that failed once and wait for their next attempt.
func fillOutbox(t *testing.T, cfg config.Config, parked, failing int) (parkedIDs, failingIDs []uint64) {
	t.Helper()
	require.NoError(t, os.MkdirAll(cfg.Store.Dir, 0o700))
	st, err := queue.Open(cfg.StorePath(), queue.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
	ctx := context.Background()
	require.NoError(t, st.Update(ctx, func(tx *queue.Tx) error {
		for i := range parked {
			id, err := tx.Enqueue(queue.Message{Kind: "test.rejected", Key: fmt.Sprintf("purchase-%d", i), Payload: []byte("{}")})
			if err != nil {
				return err
			}
			parkedIDs = append(parkedIDs, id)
		}
		for i := range failing {
			id, err := tx.Enqueue(queue.Message{Kind: "test.unreachable", Key: fmt.Sprintf("other-%d", i), Payload: []byte("{}")})
			if err != nil {
				return err
			}
			failingIDs = append(failingIDs, id)
		}
		return nil
	}))
	d := queue.NewDispatcher(st, queue.DispatcherOptions{BaseDelay: time.Hour, MaxDelay: time.Hour})
	d.Register("test.rejected", func(context.Context, queue.Message) error {
		return queue.Permanent(errors.New("provider said: bad fiscal sign"))
	})
	d.Register("test.unreachable", func(context.Context, queue.Message) error {
		return errors.New("provider unreachable")
	})
	dctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(dctx) }()
	require.Eventually(t, func() bool {
		s, err := st.OutboxStats()
		require.NoError(t, err)
		if s.Parked != parked {
			return false
		}
		ms, err := st.ListOutbox(queue.FilterPending, 0)
		require.NoError(t, err)
		for _, m := range ms {
			if m.Attempts == 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	return parkedIDs, failingIDs
}

func outboxJSON(t *testing.T, args ...string) outboxList {
	t.Helper()
	out, errOut, code := runCmd(append([]string{"outbox", "list", "--json"}, args...)...)
	require.Equal(t, exitOK, code, errOut)
	var l outboxList
	require.NoError(t, json.Unmarshal([]byte(out), &l), out)
	return l
}

func TestOutboxOnTheStoreFile(t *testing.T) {
	cfgPath, _ := writeConfig(t, "")
	cfg, err := config.Load(cfgPath)
	require.NoError(t, err)

	// No store yet: say so, and do not create one.
	_, errOut, code := runCmd("outbox", "list", "--config", cfgPath)
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, "has not run with this configuration yet")
	assert.NoFileExists(t, cfg.StorePath())

	parked, failing := fillOutbox(t, cfg, 2, 1)

	out, errOut, code := runCmd("outbox", "list", "--config", cfgPath)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "PARKED REASON / LAST ERROR")
	for _, id := range parked {
		assert.Regexp(t, fmt.Sprintf(`(?m)^%d +test\.rejected +purchase-\d +1 +\d+s +parked: permanent error: permanent: provider said: bad fiscal sign$`, id), out)
	}
	assert.NotContains(t, out, "test.unreachable", "the default list is the parked messages")
	assert.Regexp(t, `pending 1 \(oldest \d+s\), parked 2, dropped 0`, out)

	out, _, _ = runCmd("outbox", "list", "--pending", "--config", cfgPath)
	assert.Regexp(t, fmt.Sprintf(`(?m)^%d +test\.unreachable +other-0 +1 +\d+s +provider unreachable$`, failing[0]), out)

	l := outboxJSON(t, "--all", "--config", cfgPath)
	assert.Equal(t, 1, l.Pending)
	assert.Equal(t, 2, l.Parked)
	require.Len(t, l.Messages, 3)

	// Mistakes: exit 1 with what is wrong, nothing changed.
	_, errOut, code = runCmd("outbox", "retry", "999", "--config", cfgPath)
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, "no outbox message 999")
	_, errOut, code = runCmd("outbox", "drop", fmt.Sprint(failing[0]), "--config", cfgPath)
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, fmt.Sprintf("message %d is not parked", failing[0]))
	after := outboxJSON(t, "--all", "--config", cfgPath)
	after.OldestPendingAge = l.OldestPendingAge
	assert.Equal(t, l, after)

	// Usage mistakes: exit 2.
	for _, args := range [][]string{
		{"outbox", "list", "--all", "--pending"}, {"outbox", "retry"}, {"outbox", "retry", "x"},
		{"outbox", "drop", "1", "2"}, {"outbox", "list", "extra"}, {"outbox", "park", "1"}, {"outbox", "retry", "1", "--note", "n"},
	} {
		_, _, code := runCmd(append(args, "--config", cfgPath)...)
		assert.Equal(t, exitUsage, code, "%v", args)
	}

	// Retry: back in line with attempts reset. Flags may come first or last.
	out, errOut, code = runCmd("outbox", "retry", "--config", cfgPath, fmt.Sprint(parked[0]))
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "back in line")
	out, errOut, code = runCmd("outbox", "drop", fmt.Sprint(parked[1]), "--note", "duplicate of the first", "--json", "--config", cfgPath)
	require.Equal(t, exitOK, code, errOut)
	assert.JSONEq(t, fmt.Sprintf(`{"id":%d,"status":"gone"}`, parked[1]), out)

	l = outboxJSON(t, "--all", "--config", cfgPath)
	assert.Equal(t, 2, l.Pending)
	assert.Equal(t, 0, l.Parked)
	assert.Equal(t, 1, l.Dropped)
	for _, m := range l.Messages {
		if m.ID == parked[0] {
			assert.False(t, m.Parked)
			assert.Zero(t, m.Attempts)
		}
	}
	out, _, _ = runCmd("outbox", "list", "--dropped", "--config", cfgPath)
	assert.Contains(t, out, "DROPPED / NOTE")
	assert.Regexp(t, fmt.Sprintf(`(?m)^%d +test\.rejected .* dropped at \S+: duplicate of the first \(parked: permanent error\)$`, parked[1]), out)
}

// startAppInProcess runs an agent on cfg in this process until the test ends.
func startAppInProcess(t *testing.T, cfg config.Config, port int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/health", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 10*time.Second, 10*time.Millisecond)
}

func TestOutboxThroughTheRunningAgent(t *testing.T) {
	cfgPath, port := writeConfig(t, "")
	cfg, err := config.Load(cfgPath)
	require.NoError(t, err)
	parked, _ := fillOutbox(t, cfg, 2, 0)
	direct := outboxJSON(t, "--all", "--config", cfgPath)

	startAppInProcess(t, cfg, port)
	// The agent holds the store: the same command now asks it, and prints
	// the same thing.
	assert.Equal(t, direct, outboxJSON(t, "--all", "--config", cfgPath))
	out, errOut, code := runCmd("outbox", "list", "--config", cfgPath)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "parked: permanent error: permanent: provider said: bad fiscal sign")
	assert.Contains(t, out, "pending 0, parked 2, dropped 0")

	// diag says the same, as a failure pointing at this command.
	out, _, code = runCmd("diag", "--json", "--config", cfgPath)
	assert.Equal(t, exitDiagFail, code)
	res := diagByCheck(t, out)
	assert.Contains(t, res["agent"].Detail, "agent running")
	assert.Equal(t, levelFail, res["outbox"].Level)
	assert.Equal(t, "kassa-agent outbox list", res["outbox"].Hint)
	assert.Contains(t, res["outbox"].Detail, fmt.Sprintf("first parked: #%d test.rejected: permanent error: permanent: provider said: bad fiscal sign", parked[0]))

	_, errOut, code = runCmd("outbox", "retry", "424242", "--config", cfgPath)
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, "no outbox message 424242")

	out, errOut, code = runCmd("outbox", "retry", fmt.Sprint(parked[0]), "--config", cfgPath)
	require.Equal(t, exitOK, code, errOut)
	assert.Contains(t, out, "the agent delivers it now")
	_, errOut, code = runCmd("outbox", "retry", fmt.Sprint(parked[0]), "--config", cfgPath)
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, fmt.Sprintf("message %d is not parked", parked[0]))

	_, errOut, code = runCmd("outbox", "drop", fmt.Sprint(parked[1]), "--note", "refunded by hand", "--config", cfgPath)
	require.Equal(t, exitOK, code, errOut)
	l := outboxJSON(t, "--dropped", "--config", cfgPath)
	require.Len(t, l.Messages, 1)
	assert.Equal(t, parked[1], l.Messages[0].ID)
	assert.Contains(t, l.Messages[0].ParkedReason, ": refunded by hand", "the note reaches the agent")
	assert.Equal(t, 0, l.Parked)
}

func diagByCheck(t *testing.T, out string) map[string]diagResult {
	t.Helper()
	var rs []diagResult
	require.NoError(t, json.Unmarshal([]byte(out), &rs), out)
	m := map[string]diagResult{}
	for _, r := range rs {
		_, dup := m[r.Check]
		require.False(t, dup, "check %s twice", r.Check)
		m[r.Check] = r
	}
	return m
}

// A record that does not decode does not break the listing: it is shown
// with its decode error, and the others still are.
func TestOutboxListsDamagedRecord(t *testing.T) {
	cfgPath, _ := writeConfig(t, "")
	cfg, err := config.Load(cfgPath)
	require.NoError(t, err)
	parked, failing := fillOutbox(t, cfg, 1, 1)
	db, err := bolt.Open(cfg.StorePath(), 0o600, &bolt.Options{Timeout: time.Second})
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("ob:msg")).Put(binary.BigEndian.AppendUint64(nil, failing[0]), []byte("\x07not an outbox record"))
	}))
	require.NoError(t, db.Close())

	out, errOut, code := runCmd("outbox", "list", "--all", "--config", cfgPath)
	require.Equal(t, exitOK, code, errOut)
	assert.Regexp(t, fmt.Sprintf(`(?m)^%d +other-0 +0 +- +queue: unknown message format 7$`, failing[0]), out)
	assert.Regexp(t, fmt.Sprintf(`(?m)^%d +test\.rejected +purchase-0 `, parked[0]), out)
	l := outboxJSON(t, "--all", "--config", cfgPath)
	require.Len(t, l.Messages, 2)
	assert.Equal(t, "queue: unknown message format 7", l.Messages[1].LastError)

	// The dispatcher parks it; it can be dropped, not retried.
	st, err := queue.Open(cfg.StorePath(), queue.Options{})
	require.NoError(t, err)
	d := queue.NewDispatcher(st, queue.DispatcherOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	require.Eventually(t, func() bool {
		s, err := st.OutboxStats()
		return err == nil && s.Parked == 2
	}, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.NoError(t, st.Close())
	_, errOut, code = runCmd("outbox", "retry", fmt.Sprint(failing[0]), "--config", cfgPath)
	assert.Equal(t, exitFail, code)
	assert.Contains(t, errOut, fmt.Sprintf("message %d: its record is damaged; it cannot be retried, only dropped", failing[0]))
	_, errOut, code = runCmd("outbox", "drop", fmt.Sprint(failing[0]), "--note", "checked by hand", "--config", cfgPath)
	require.Equal(t, exitOK, code, errOut)
	l = outboxJSON(t, "--dropped", "--config", cfgPath)
	require.Len(t, l.Messages, 1)
	assert.Contains(t, l.Messages[0].ParkedReason, "checked by hand")
}
