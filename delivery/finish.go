package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// finish records the attempts of items whose jobs are all done (those of
// one job, usually: in one store call, FinishAttempts): each recipient's
// state (expired ones failed), the next attempt, and the DSN the attempt
// calls for. Nothing is recorded for an item whose attempt was cut short
// by shutdown, or whose lease was lost.
func (e *Engine) finish(irs []*itemRun) {
	// The attempts happened: record them even if shutdown begins now.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(e.runCtx), 30*time.Second)
	defer cancel()
	var as []mailstore.QueueAttempt
	for _, ir := range irs {
		ir.mu.Lock()
		aborted := ir.aborted
		ir.mu.Unlock()
		if aborted || ir.lost.Load() {
			e.log.Info("delivery attempt abandoned; the lease will expire", "queue", ir.item.ID)
			continue
		}
		as = append(as, e.attempt(ctx, ir))
	}
	if len(as) == 0 {
		return
	}
	for i, err := range e.st.FinishAttempts(ctx, e.cfg.Holder, as) {
		switch {
		case err == nil:
		case errors.Is(err, mailstore.ErrLeaseLost):
			e.log.Warn("queue lease lost before the attempt was recorded", "queue", as[i].ItemID)
		default:
			e.log.Error("recording a delivery attempt failed", "queue", as[i].ItemID, "err", err)
		}
	}
}

// attempt makes what finish records of an item's attempt, and sends the
// DSN it calls for.
func (e *Engine) attempt(ctx context.Context, ir *itemRun) mailstore.QueueAttempt {
	it := &ir.item
	now := e.cfg.Now()
	a := mailstore.QueueAttempt{ItemID: it.ID, At: now}
	expires := it.CreatedAt.Add(e.cfg.QueueLifetime)
	expired := !now.Before(expires)
	var (
		notes    []DSNRecipient
		failedAt []int // indexes in a.Results of failures reported by the DSN
		attempts int
		pending  []mailstore.QueueRecipient
	)
	for _, rc := range sortedRcpts(it) {
		if rc.State != mailstore.RcptPending {
			continue
		}
		r := ir.results[rc.ID]
		if r == nil {
			r = tempResult("4.3.0", "not attempted")
		}
		if r.state == mailstore.RcptPending && expired {
			// RFC 3463 X.4.7: delivery time expired; the last reply
			// says why.
			r = &result{state: mailstore.RcptFailed, code: "4.4.7", remote: r.remote,
				reply: r.reply + " (gave up after " + e.cfg.QueueLifetime.String() + ")"}
		}
		a.Results = append(a.Results, mailstore.QueueRecipientResult{
			RecipientID: rc.ID, State: r.state, Code: r.code, Reply: r.reply, RemoteMTA: r.remote,
		})
		note := DSNRecipient{FinalRecipient: rc.Address, OriginalRecipient: rc.ORCPT, Status: r.code,
			RemoteMTA: r.remote, Diagnostic: r.reply, LastAttempt: now}
		switch r.state {
		case mailstore.RcptDelivered:
			e.metrics.results.WithLabelValues("delivered").Inc()
			// RFC 3461 §6.2.1: NOTIFY=SUCCESS and a receiver that will not
			// report: we say "relayed".
			if r.relayed && notifies(rc.Notify, ActionRelayed) {
				note.Action = ActionRelayed
				notes = append(notes, note)
			}
		case mailstore.RcptFailed:
			e.metrics.results.WithLabelValues("failed").Inc()
			if notifies(rc.Notify, ActionFailed) {
				note.Action = ActionFailed
				notes = append(notes, note)
				failedAt = append(failedAt, len(a.Results)-1)
			}
		default:
			e.metrics.results.WithLabelValues("deferred").Inc()
			attempts = max(attempts, rc.Attempts+1)
			rc.LastReply, rc.LastCode, rc.RemoteMTA = r.reply, r.code, r.remote
			pending = append(pending, rc)
		}
	}
	if len(pending) > 0 {
		a.Next = now.Add(e.backoff(attempts))
		if a.Next.After(expires) && now.Before(expires) {
			a.Next = expires // expire on time
		}
		if it.WarnedAt.IsZero() && e.cfg.DelayWarning > 0 && now.Sub(it.CreatedAt) >= e.cfg.DelayWarning {
			a.Warned = now
			for _, rc := range pending {
				if notifies(rc.Notify, ActionDelayed) {
					notes = append(notes, DSNRecipient{FinalRecipient: rc.Address, OriginalRecipient: rc.ORCPT,
						Action: ActionDelayed, Status: rc.LastCode, RemoteMTA: rc.RemoteMTA, Diagnostic: rc.LastReply,
						LastAttempt: now, WillRetryUntil: expires})
				}
			}
		}
	}
	// Never a DSN about a DSN or other mail with a null reverse-path
	// (RFC 5321 §4.5.5, RFC 3464 §4).
	if it.MailFrom == "" {
		notes = nil
	}
	if len(notes) > 0 {
		if err := e.sendDSN(ctx, it, notes, now); err != nil {
			// Without its DSN a failure must not be final: keep those
			// recipients pending, to fail (and notify) again soon.
			e.log.Error("storing a DSN failed; failures kept pending", "queue", it.ID, "err", err)
			for _, i := range failedAt {
				a.Results[i].State = mailstore.RcptPending
			}
			if len(failedAt) > 0 && (a.Next.IsZero() || a.Next.After(now.Add(e.cfg.RetryMin))) {
				a.Next = now.Add(e.cfg.RetryMin)
			}
			a.Warned = time.Time{}
		}
	}
	return a
}

// backoff is the wait before attempt n+1: RetryMin doubling to RetryMax.
func (e *Engine) backoff(n int) time.Duration {
	d := e.cfg.RetryMin
	for i := 1; i < n && d < e.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, e.cfg.RetryMax)
}

// sendDSN builds one DSN for the item's notes and stores it: in the
// sender's INBOX when a local account sent the message, else queued to the
// reverse-path with a null reverse-path of its own.
func (e *Engine) sendDSN(ctx context.Context, it *mailstore.QueueItem, notes []DSNRecipient, now time.Time) error {
	d := &DSN{
		ReportingMTA: e.cfg.Hostname, QueueID: it.ID, EnvelopeID: param(it.Params, "envid"),
		ArrivalDate: it.CreatedAt, To: it.MailFrom, Recipients: notes, Date: now,
		Headers: strings.EqualFold(param(it.Params, "ret"), "HDRS"),
	}
	anyFailed := false
	for _, n := range notes {
		anyFailed = anyFailed || n.Action == ActionFailed
	}
	if !anyFailed {
		d.Headers = true // a delay report carries the header only
	}
	var orig io.Reader
	body, err := openBody(ctx, e.st, it)
	if err != nil {
		return fmt.Errorf("opening the original: %w", err)
	}
	defer body.Close()
	orig = body
	msg, err := d.Build(orig, it.Size)
	if err != nil {
		return err
	}
	del := &mailstore.Delivery{MailFrom: "", InternalDate: now}
	if it.SenderAccount != 0 {
		// RFC 5321 §4.4: the final delivery records the (null) return path.
		msg = append([]byte("Return-Path: <>\r\n"), msg...)
		del.Recipients = []mailstore.Recipient{{AccountID: it.SenderAccount}}
	} else {
		del.Remote = []mailstore.RemoteRecipient{{Address: it.MailFrom}}
	}
	del.Body = bytes.NewReader(msg)
	_, err = e.st.Deliver(ctx, del)
	if errors.Is(err, mailstore.ErrNoSuchAccount) {
		e.log.Warn("DSN dropped: the sender's account no longer exists", "queue", it.ID)
		return nil
	}
	if err == nil {
		e.log.Info("DSN sent", "queue", it.ID, "recipients", len(notes), "local", it.SenderAccount != 0)
		if it.SenderAccount == 0 {
			e.Kick()
		}
	}
	return err
}
