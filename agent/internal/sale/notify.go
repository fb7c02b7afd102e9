package sale

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"kassa-agent/agent/internal/localapi"
	"kassa-agent/payments"
	"kassa-agent/queue"
)

// A provider's notification (webhook, callback) relayed to the till is a hint:
// once its signature checks out, the payment it names is asked for its status
// at once. It never changes a payment by itself; the status decides.

// maxNotice bounds a notification body.
const maxNotice = 64 << 10

func (e *Engine) apiNotice(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	prov := e.providers[name]
	v, ok := prov.verifier()
	if !ok {
		localapi.WriteError(w, localapi.Errorf("not_found", "provider "+name+" is not enabled or takes no notifications"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxNotice+1))
	if err != nil || len(body) > maxNotice {
		localapi.WriteError(w, localapi.Errorf("body_too_large", "a notification is at most 64 KiB"))
		return
	}
	ref, err := v.VerifyNotice(r.Header, r.URL.Query(), body)
	if err != nil {
		e.noticeRefused(name, err)
		localapi.WriteError(w, localapi.Errorf("unauthorized", "the notification's signature does not check out"))
		return
	}
	id, err := e.paymentOf(name, ref)
	if err != nil {
		e.log.Warn("verified notification names no payment of this till", "provider", name, "provider_id", ref.ProviderID, "order_id", ref.OrderID)
		localapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "unknown_payment"})
		return
	}
	e.log.Info("verified notification; asking the status now", "payment_id", id, "provider", name)
	e.poke(id)
	localapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "accepted", "payment_id": id})
}

// verifier is the provider's notification check, if it has one and is enabled.
func (p *provider) verifier() (payments.Verifier, bool) {
	if p == nil || p.Provider == nil {
		return nil, false
	}
	v, ok := p.Provider.(payments.Verifier)
	return v, ok
}

// paymentOf finds the payment a notification names: by the provider's id
// (indexed when the provider answered) or by our own order id, which carries
// the payment id.
func (e *Engine) paymentOf(provider string, ref payments.Ref) (string, error) {
	var id string
	err := e.store.View(func(r *queue.ReadTx) error {
		if ref.ProviderID != "" {
			if b, err := r.Get(collProviderIndex, provider+":"+ref.ProviderID); err == nil {
				id = string(b)
				return nil
			}
		}
		if pid, ok := strings.CutPrefix(ref.OrderID, e.tillID+"-"); ok {
			p, err := getPayment(r, pid)
			if err == nil && p.Provider == provider {
				id = p.ID
				return nil
			}
		}
		return queue.ErrNotFound
	})
	return id, err
}

// noticeRefused logs a refused notification once a minute per provider: a
// stream of forgeries must not flood the log.
func (e *Engine) noticeRefused(provider string, err error) {
	e.noticeLog.Lock()
	defer e.noticeLog.Unlock()
	if e.noticeLog.last == nil {
		e.noticeLog.last = map[string]time.Duration{}
	}
	now := e.clock.Mono()
	if last, ok := e.noticeLog.last[provider]; ok && now-last < time.Minute {
		e.noticeLog.dropped++
		return
	}
	e.noticeLog.last[provider] = now
	e.log.Warn("notification refused: signature missing or wrong", "provider", provider, "err", errors.Unwrap(err), "refused_since_last_line", e.noticeLog.dropped)
	e.noticeLog.dropped = 0
}

// noticeLog paces the log lines of refused notifications.
type noticeLog struct {
	sync.Mutex
	last    map[string]time.Duration
	dropped int
}
