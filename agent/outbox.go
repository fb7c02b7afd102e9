package main

import (
	"cmp"
	"errors"
	"net/http"
	"strconv"
	"time"

	"kassa-agent/agent/internal/localapi"
	"kassa-agent/queue"
)

// outboxStatus is what GET /v1/outbox and /v1/status show about deliveries.
type outboxStatus struct {
	Pending          int             `json:"pending"`
	Parked           int             `json:"parked"`
	Dropped          int             `json:"dropped"`
	OldestPendingAge float64         `json:"oldest_pending_age_seconds"`
	OldestPending    time.Time       `json:"oldest_pending,omitzero"`
	ParkedMessages   []outboxMessage `json:"parked_messages,omitempty"`
}

// outboxMessage is a message as a technician sees it. Payloads are not shown:
// they are provider data, and the kind and key say what it is.
type outboxMessage struct {
	ID           uint64    `json:"id"`
	Kind         string    `json:"kind"`
	Key          string    `json:"key"`
	Created      time.Time `json:"created"`
	Attempts     int       `json:"attempts"`
	NextAttempt  time.Time `json:"next_attempt,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	Parked       bool      `json:"parked"`
	ParkedReason string    `json:"parked_reason,omitempty"`
	ParkedAt     time.Time `json:"parked_at,omitzero"`
}

func messageView(m queue.Message) outboxMessage {
	return outboxMessage{ID: m.ID, Kind: m.Kind, Key: m.Key, Created: m.Created, Attempts: m.Attempts,
		NextAttempt: m.NextAttempt, LastError: m.LastError, Parked: m.Parked, ParkedReason: m.ParkedReason, ParkedAt: m.ParkedAt}
}

func storeOutboxStatus(s *queue.Store, parkedLimit int) (*outboxStatus, error) {
	st, err := s.OutboxStats()
	if err != nil {
		return nil, err
	}
	out := &outboxStatus{Pending: st.Pending, Parked: st.Parked, Dropped: st.Dropped,
		OldestPending: st.OldestPending, OldestPendingAge: st.OldestPendingAge.Seconds()}
	if st.Parked > 0 {
		ms, err := s.ListOutbox(queue.FilterParked, parkedLimit)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			out.ParkedMessages = append(out.ParkedMessages, messageView(m))
		}
	}
	return out, nil
}

func (a *app) outboxStatus() (*outboxStatus, error) { return storeOutboxStatus(a.store, 20) }

func (a *app) outboxRoutes(s *localapi.Server) {
	s.Handle("GET /v1/outbox", func(w http.ResponseWriter, r *http.Request) {
		filter := queue.Filter(r.URL.Query().Get("filter"))
		if filter == "" {
			filter = queue.FilterParked
		}
		switch filter {
		case queue.FilterAll, queue.FilterPending, queue.FilterParked, queue.FilterDropped:
		default:
			localapi.WriteError(w, localapi.Errorf("bad_request", "filter must be all, pending, parked or dropped"))
			return
		}
		st, err := storeOutboxStatus(a.store, 0)
		if err != nil {
			localapi.WriteError(w, localapi.Wrap("store_unavailable", "cannot read the outbox", err))
			return
		}
		ms, err := a.store.ListOutbox(filter, 500)
		if err != nil {
			localapi.WriteError(w, localapi.Wrap("store_unavailable", "cannot read the outbox", err))
			return
		}
		st.ParkedMessages = nil
		views := make([]outboxMessage, 0, len(ms))
		for _, m := range ms {
			views = append(views, messageView(m))
		}
		localapi.WriteJSON(w, http.StatusOK, struct {
			*outboxStatus
			Messages []outboxMessage `json:"messages"`
		}{st, views})
	})
	s.Handle("POST /v1/outbox/{id}/retry", func(w http.ResponseWriter, r *http.Request) {
		a.outboxAction(w, r, func(id uint64) error { return a.store.RetryParked(r.Context(), id) })
	})
	s.Handle("POST /v1/outbox/{id}/drop", func(w http.ResponseWriter, r *http.Request) {
		a.outboxAction(w, r, func(id uint64) error {
			return a.store.DropParked(r.Context(), id, cmp.Or(r.URL.Query().Get("note"), "dropped over the local API"))
		})
	})
}

func (a *app) outboxAction(w http.ResponseWriter, r *http.Request, do func(uint64) error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		localapi.WriteError(w, localapi.Errorf("bad_request", "message id must be a number"))
		return
	}
	if err := do(id); err != nil {
		localapi.WriteError(w, outboxErr(err))
		return
	}
	m, err := a.store.GetMessage(id)
	if errors.Is(err, queue.ErrNotFound) {
		localapi.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "status": "gone"})
		return
	}
	if err != nil {
		localapi.WriteError(w, outboxErr(err))
		return
	}
	localapi.WriteJSON(w, http.StatusOK, messageView(m))
}

// damagedRetryMsg answers a retry of a message whose record is damaged.
const damagedRetryMsg = "the message's record is damaged: it cannot be delivered, only dropped"

func outboxErr(err error) error {
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return localapi.Wrap("not_found", "no such outbox message", err)
	case errors.Is(err, queue.ErrNotParked):
		return localapi.Wrap("conflict", "the message is not parked; only parked messages can be retried or dropped", err)
	case errors.Is(err, queue.ErrDamagedMessage):
		return localapi.Wrap("conflict", damagedRetryMsg, err)
	default:
		return localapi.Wrap("store_unavailable", err.Error(), err)
	}
}
