package smtpd

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailstore"
)

// Inbound authentication (port 25 only; submission is authenticated by
// AUTH): SPF is evaluated as soon as the transaction has a recipient,
// while the client sends its message; DKIM and DMARC once the message is
// received, before it is stored. The verdict goes into an
// Authentication-Results: field (RFC 8601), and DMARC's policy decides
// between delivery, the recipient's Junk mailbox, and refusal
// (Config.InboundAuth's Mode). Forged Authentication-Results: fields that
// claim our Hostname are removed from every inbound message, checked or
// not (RFC 8601 §5).

var (
	authResults = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_auth_results_total",
		Help: "Inbound (port 25) sender authentication results, by method (spf, dkim, dmarc) and result (RFC 8601 values; dkim counts each signature verified, none for an unsigned message).",
	}, []string{"method", "result"})
	authActions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_auth_actions_total",
		Help: "What inbound sender authentication did with received messages: deliver, quarantine (Junk), reject (550) or defer (451, DNS failure).",
	}, []string{"action"})
)

// spfJob is the SPF evaluation of one transaction, running beside the
// transfer of the message.
type spfJob struct {
	done   chan struct{}
	res    mailauth.SPFResult
	cancel context.CancelFunc
}

// startSPF starts evaluating SPF for the transaction once it has its first
// recipient (a MAIL without one costs no DNS queries).
func (s *session) startSPF(tx *transaction) {
	chk := s.srv.cfg.InboundAuth
	if chk == nil || s.c.role != roleInbound || tx.spf != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.c.fc.Ctx)
	j := &spfJob{done: make(chan struct{}), cancel: cancel}
	ip, helo, from := s.c.fc.Peer.IP, s.c.helo, tx.from
	go func() {
		defer close(j.done)
		j.res = chk.SPF(ctx, ip, helo, from)
	}()
	tx.spf = j
}

// stop cancels the evaluation (the transaction ended).
func (j *spfJob) stop() {
	if j != nil {
		j.cancel()
	}
}

// wait returns the result; SPFTimeout bounds it.
func (j *spfJob) wait() mailauth.SPFResult {
	<-j.done
	return j.res
}

// authenticate runs the checks on the received message. It returns the
// verdict, or the reply that refuses the message (nothing is stored):
// 550 for a DMARC reject, 451 when DNS failed and the verdict depends on
// it. A nil verdict and reply: checks disabled.
func (s *session) authenticate(tx *transaction, log *slog.Logger) (*mailauth.Result, *reply) {
	chk := s.srv.cfg.InboundAuth
	if chk == nil || tx.spf == nil {
		return nil, nil
	}
	defer tx.spf.stop()
	spfRes := tx.spf.wait()
	msg, err := s.spool.reader()
	if err == nil {
		var v *mailauth.Result
		if v, err = chk.Message(s.c.fc.Ctx, spfRes, msg); err == nil {
			return v, s.applyVerdict(v, log)
		}
	}
	log.Error("spool failure", "op", "authentication", "err", err)
	messagesRejected.WithLabelValues(s.c.roleLabel, "spool_error").Inc()
	return nil, replyErr(451, 4, 3, 0, "Temporary local problem, please try again later")
}

// applyVerdict counts a verdict and returns the reply that refuses the
// message, if it is refused.
func (s *session) applyVerdict(v *mailauth.Result, log *slog.Logger) *reply {
	authResults.WithLabelValues("spf", v.SPF.Result).Inc()
	if len(v.DKIM) == 0 {
		authResults.WithLabelValues("dkim", mailauth.DKIMNone).Inc()
	}
	for _, d := range v.DKIM {
		authResults.WithLabelValues("dkim", d.Result).Inc()
	}
	authResults.WithLabelValues("dmarc", v.DMARC.Result).Inc()
	authActions.WithLabelValues(v.Action.String()).Inc()

	var r *reply
	var reason string
	switch v.Action {
	case mailauth.Reject:
		reason = "dmarc_reject"
		if v.DMARC.FromDomain == "" {
			// RFC 7489 §6.6.1.
			r = replyErr(550, 5, 7, 1, "Message refused: it must have exactly one From: field naming one domain (RFC 5322 §3.6, RFC 7489 §6.6.1)")
		} else {
			r = replyErr(550, 5, 7, 1, "Message refused: "+v.DMARC.FromDomain+" publishes a DMARC reject policy and this message failed authentication (RFC 7489)")
		}
	case mailauth.Defer:
		// RFC 7489 §6.6.2 / RFC 7208 §2.6.6: a DNS failure defers, never
		// refuses.
		reason = "auth_temperror"
		r = replyErr(451, 4, 4, 3, "Temporary DNS failure while authenticating the sender, please try again later")
	default:
		return nil
	}
	messagesRejected.WithLabelValues(s.c.roleLabel, reason).Inc()
	log.Info("message refused", append([]any{"reason", reason}, verdictAttrs(v)...)...)
	return r
}

// inboundMessage returns what is stored of an inbound message: our trace
// fields, then the Authentication-Results: field of the verdict (if the
// checks ran), then the message without forged Authentication-Results:
// fields claiming our host name.
func (s *session) inboundMessage(trace []byte, body io.Reader, v *mailauth.Result) ([]byte, io.Reader) {
	cfg := &s.srv.cfg
	if v != nil {
		trace = append(trace, v.AuthResults(cfg.Hostname)...)
	}
	return trace, mailauth.StripAuthResults(body, cfg.Hostname, int(cfg.MaxHeaderBytes))
}

// quarantine files the delivery in each recipient's junk mailbox (the one
// with the \Junk special use, RFC 6154), with the $Junk keyword; a
// recipient without one gets it in INBOX with $Junk.
func (s *session) quarantine(ctx context.Context, d *mailstore.Delivery) *reply {
	for i := range d.Recipients {
		r := &d.Recipients[i]
		mbs, err := s.srv.store.ListMailboxes(ctx, r.AccountID)
		if err != nil {
			return s.storeFailure("list mailboxes", err)
		}
		for _, mb := range mbs {
			if mb.SpecialUse == mailstore.SpecialUseJunk {
				r.Mailbox = mb.Name
				break
			}
		}
		r.Flags.Keywords = append(r.Flags.Keywords, "$Junk")
	}
	return nil
}

// verdictAttrs are a verdict's log attributes (no message content).
func verdictAttrs(v *mailauth.Result) []any {
	if v == nil {
		return nil
	}
	dkim := make([]string, 0, len(v.DKIM))
	for _, d := range v.DKIM {
		dkim = append(dkim, d.Result)
	}
	if len(dkim) == 0 {
		dkim = append(dkim, mailauth.DKIMNone)
	}
	a := []any{
		"spf", v.SPF.Result, "dkim", strings.Join(dkim, ","), "dmarc", v.DMARC.Result,
		"from_domain", v.DMARC.FromDomain, "auth_action", v.Action.String(),
	}
	if v.DMARC.Applied != "" {
		a = append(a, "dmarc_policy", v.DMARC.Applied)
	}
	return a
}
