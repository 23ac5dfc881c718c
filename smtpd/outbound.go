package smtpd

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/postrider/postrider/internal/srs"
	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailstore"
)

// Mail that leaves: recipients of a submission in other domains, the
// external targets of aliases (forwarding, with the sender rewritten by
// SRS so that SPF passes at the receiver), and bounces that come back to
// an SRS address of ours. All of it is committed to the store's outbound
// queue (Delivery.Remote) before the 250, in the same transaction as the
// local copies where the envelope is the same.

// rcptTarget is where one RCPT goes.
type rcptTarget struct {
	accounts []int64
	remote   *mailstore.RemoteRecipient // submission: a recipient elsewhere
	forward  *forward                   // an alias's external targets, or an SRS bounce
}

// forward is one recipient whose mail is sent on to external addresses.
type forward struct {
	rcpt    string // the recipient as given (local@domain), for Delivered-To:
	domain  string // its domain, ours: the domain of the rewritten sender
	targets []mailstore.RemoteRecipient
	// bounce: a bounce to one of our SRS addresses, going back to the
	// original sender. It gets no Delivered-To: (it is not an alias).
	bounce bool
}

// maxReceived bounds the Received: fields of a message we take. RFC 5321
// §6.3: loop detection by counting them SHOULD use a large threshold,
// "normally at least 100" (Postfix's hopcount_limit is 50, Exim's
// received_headers_max 30).
const maxReceived = 100

// dsnOf returns the DSN parameters of a recipient as the queue keeps them
// (RFC 3461 §4.1, §4.2): NOTIFY as a comma-separated list, ORCPT as
// "type;address". When the client gave no ORCPT, orig (the address it
// used, when we send to another one) is kept in its place (RFC 3461 §4.2:
// an MTA that changes the recipient may supply it).
func dsnOf(p rcptParams, orig string) (notify, orcpt string) {
	notify = strings.Join(p.notify, ",")
	switch {
	case p.orcpt != "":
		orcpt = p.orcptType + ";" + p.orcpt
	case orig != "" && isASCII(orig):
		orcpt = "rfc822;" + orig
	case orig != "":
		orcpt = "utf-8;" + orig // RFC 6533 §3
	}
	return notify, orcpt
}

// remoteRecipient accepts a submission's recipient in another domain:
// its domain already in A-labels (parseAddress), its local part in
// canonical form and within RFC 5321's limits (§4.5.3.1).
func (s *session) remoteRecipient(a address, p rcptParams) (rcptTarget, *reply) {
	addr, _, err := mailstore.NormalizeRemoteAddress(pathString(a.local + "@" + a.domain))
	if err != nil {
		rcptRejected.WithLabelValues("syntax").Inc()
		return rcptTarget{}, replyErr(553, 5, 1, 3, "Bad recipient address (RFC 5321 §4.1.2, §4.5.3.1)")
	}
	notify, orcpt := dsnOf(p, "")
	return rcptTarget{remote: &mailstore.RemoteRecipient{Address: addr, Notify: notify, ORCPT: orcpt}}, nil
}

// forwardOf makes the forward of an alias to its external targets (as
// the store normalised them).
func forwardOf(a address, p rcptParams, targets []string) *forward {
	rcpt := a.local + "@" + a.domain
	f := &forward{rcpt: rcpt, domain: a.domain}
	for _, t := range targets {
		notify, orcpt := dsnOf(p, rcpt)
		f.targets = append(f.targets, mailstore.RemoteRecipient{Address: t, Notify: notify, ORCPT: orcpt})
	}
	return f
}

// resolveSRS handles a recipient of the SRS form: in one of our domains
// it is a bounce of mail we forwarded, verified (hash and age) and sent
// back to the original sender, or refused. ok is false when the address
// is not ours to judge (another domain, or not SRS after all).
func (s *session) resolveSRS(ctx context.Context, a address, p rcptParams) (t rcptTarget, r *reply, ok bool) {
	local, err := s.srv.store.IsLocalDomain(ctx, a.domain)
	if err != nil {
		return rcptTarget{}, s.storeFailure("is local domain", err), true
	}
	if !local {
		return rcptTarget{}, nil, false
	}
	rw, err := s.srv.srs.get(ctx, s.srv)
	if err != nil {
		return rcptTarget{}, s.storeFailure("srs key", err), true
	}
	orig, err := rw.Reverse(a.local)
	switch {
	case errors.Is(err, srs.ErrNotSRS):
		return rcptTarget{}, nil, false
	case err != nil:
		rcptRejected.WithLabelValues("srs_invalid").Inc()
		s.c.log.Info("invalid SRS address", "err", err)
		return rcptTarget{}, replyErr(550, 5, 1, 1, "No such user here (invalid or expired SRS address)"), true
	}
	at := strings.LastIndexByte(orig, '@')
	origLocal, origDomain := orig[:at], orig[at+1:]
	rcpt := a.local + "@" + a.domain
	if mine, err := s.srv.store.IsLocalDomain(ctx, origDomain); err != nil {
		return rcptTarget{}, s.storeFailure("is local domain", err), true
	} else if mine {
		// We rewrote one of our own senders (forwarded mail that
		// claimed our domain on port 25): the bounce is delivered here.
		res, err := s.srv.rcache.resolve(ctx, s.srv.store, origLocal+"@"+origDomain)
		if err != nil || len(res.Accounts) == 0 {
			rcptRejected.WithLabelValues("unknown_user").Inc()
			return rcptTarget{}, replyErr(550, 5, 1, 1, "No such user here"), true
		}
		for _, acct := range res.Accounts {
			t.accounts = append(t.accounts, acct.ID)
		}
		return t, nil, true
	}
	addr, _, err := mailstore.NormalizeRemoteAddress(pathString(orig))
	if err != nil {
		rcptRejected.WithLabelValues("srs_invalid").Inc()
		return rcptTarget{}, replyErr(550, 5, 1, 1, "No such user here (unusable SRS address)"), true
	}
	notify, orcpt := dsnOf(p, rcpt)
	t.forward = &forward{rcpt: rcpt, domain: a.domain, bounce: true,
		targets: []mailstore.RemoteRecipient{{Address: addr, Notify: notify, ORCPT: orcpt}}}
	return t, nil, true
}

// srsKey is the node's SRS rewriter, made on first use from the cluster's
// secret (the same on every node, so that any node verifies what another
// one wrote).
type srsKey struct {
	mu sync.Mutex
	rw *srs.Rewriter
}

// srsSecretName names the SRS key in the store's cluster secrets.
const srsSecretName = "srs"

func (k *srsKey) get(ctx context.Context, s *Server) (*srs.Rewriter, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.rw != nil {
		return k.rw, nil
	}
	key, err := s.store.ClusterSecret(ctx, srsSecretName, func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	})
	if err != nil {
		return nil, err
	}
	rw, err := srs.New(key, s.cfg.SRSMaxAge)
	if err != nil {
		return nil, err
	}
	k.rw = rw
	return rw, nil
}

// checkLoops refuses a message that has been around too often: more than
// maxReceived Received: fields (RFC 5321 §6.3), or a Delivered-To: naming
// a recipient we are about to forward (it came back through that alias).
// It reads the captured header section line by line without copying it:
// it runs for every message.
func (s *session) checkLoops(tx *transaction) (*reply, string) {
	hdr := s.msg.sc.header
	received := 0
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line, hdr = hdr[:i+1], hdr[i+1:]
		} else {
			hdr = nil
		}
		switch {
		case len(line) <= 2: // the empty line: the end of the section
			hdr = nil
		case hasFieldName(line, "Received"):
			received++
		case len(tx.forwards) > 0 && hasFieldName(line, "Delivered-To"):
			// One address, unfolded in practice (Postfix, Exim and we
			// write it on one line).
			v := line[bytes.IndexByte(line, ':')+1:]
			v = bytes.Trim(bytes.TrimSpace(v), "<>")
			for _, f := range tx.forwards {
				if !f.bounce && strings.EqualFold(string(v), f.rcpt) {
					return replyErr(554, 5, 4, 6, "Mail loop: already delivered to "+f.rcpt), "loop_delivered_to"
				}
			}
		}
	}
	if received > maxReceived {
		return replyErr(554, 5, 4, 6, "Too many Received: header fields: mail loop (RFC 5321 §6.3)"), "loop_received"
	}
	return nil, ""
}

// hasFieldName reports whether a header line starts the field name
// (RFC 5322 §3.6: name, optional white space, colon; any case).
func hasFieldName(line []byte, name string) bool {
	if len(line) <= len(name) || !hasPrefixFold(line, name) {
		return false
	}
	rest := bytes.TrimLeft(line[len(name):], " \t")
	return len(rest) > 0 && rest[0] == ':'
}

// leaves reports whether some of the transaction's mail is queued.
func (tx *transaction) leaves() bool { return len(tx.remote) > 0 || len(tx.forwards) > 0 }

// signature returns the DKIM-Signature fields for a submitted message
// that leaves us, read once from the spool (mailauth.DKIMSigner). Only
// such messages are signed: a copy that stays here never meets a
// verifier (port 25 is where we verify), and the local fast path keeps
// its cost (no second read of the message, no RSA signature, about 1 ms
// of CPU each). A message with both kinds of recipients is signed, and
// its local copies, which share its body, carry the signature too.
func (s *session) signature(ctx context.Context, tx *transaction, log *slog.Logger) ([]byte, *reply) {
	if s.c.role != roleSubmission || !tx.leaves() {
		return nil, nil
	}
	var domains []string
	if fields, err := headerOriginators(s.msg.sc.header); err == nil {
		for _, f := range fields {
			if f.field != "From" {
				continue
			}
			for _, a := range f.addrs {
				at := strings.LastIndexByte(a.Address, '@')
				if d, err := asciiDomain(a.Address[at+1:]); err == nil {
					domains = append(domains, d)
				}
			}
		}
	}
	body, err := s.spool.reader()
	if err != nil {
		log.Error("spool failure", "err", err)
		return nil, replyErr(451, 4, 3, 0, "Temporary local problem, please try again later")
	}
	if s.msg.sc.inHeader {
		// No empty line ends the header section: the signer needs one
		// (the body is then empty, and hashes as such).
		end := "\r\n"
		if s.msg.sc.lineLen > 0 {
			end = "\r\n\r\n"
		}
		body = io.MultiReader(body, strings.NewReader(end))
	}
	sig, err := s.srv.signer.Sign(ctx, domains, body)
	if errors.Is(err, mailauth.ErrDKIMBlankRun) {
		log.Info("message refused", "reason", "blank_run", "err", err)
		return nil, replyErr(554, 5, 6, 0, "Message refused: too many consecutive empty lines")
	}
	if err != nil {
		log.Error("DKIM signing failed", "err", err)
		return nil, replyErr(451, 4, 7, 0, "Temporary problem signing the message, please try again later")
	}
	return sig, nil
}

// outDelivery is one store delivery of a message: the prefix is the
// header fields we put before the message as received.
type outDelivery struct {
	d      *mailstore.Delivery
	prefix []byte
}

// deliveries plans the store deliveries of a message. Local copies and
// the submission's remote recipients share one delivery (one transaction,
// the body stored once, the submitter's reverse-path). Forwarded mail has
// another reverse-path (SRS) and a Delivered-To: of its own, so each
// forwarding alias gets a delivery of its own; a Delivered-To: that
// named every alias of the transaction would show each target the
// others (the Bcc: concern of RFC 5321 §7.2).
func (s *session) deliveries(ctx context.Context, tx *transaction, acct *mailstore.Account, received, sig []byte) ([]outDelivery, *reply) {
	sub := s.c.role == roleSubmission
	var sender int64
	if sub && acct != nil {
		sender = acct.ID
	}
	params := dsnParams(tx)
	var out []outDelivery
	if len(tx.accounts) > 0 || len(tx.remote) > 0 {
		var prefix []byte
		if len(tx.accounts) > 0 {
			// RFC 5321 §4.4: final delivery adds Return-Path:. Queued
			// copies share the body; the delivery engine leaves it out.
			prefix = append(returnPathHeader(tx.from), received...)
		} else {
			prefix = append([]byte(nil), received...)
		}
		prefix = append(prefix, sig...)
		d := &mailstore.Delivery{MailFrom: tx.from, Params: params}
		for _, a := range tx.accounts {
			d.Recipients = append(d.Recipients, mailstore.Recipient{AccountID: a})
		}
		if len(tx.remote) > 0 {
			d.Remote, d.SenderAccount, d.Params = tx.remote, sender, transportParams(params, tx)
		}
		out = append(out, outDelivery{d: d, prefix: prefix})
	}
	type key struct{ from, rcpt string }
	groups := map[key]int{}
	senders := map[string]string{} // forward domain → reverse-path
	for _, f := range tx.forwards {
		from, ok := senders[f.domain]
		if !ok {
			var r *reply
			if from, r = s.forwardSender(ctx, tx, f.domain); r != nil {
				return nil, r
			}
			senders[f.domain] = from
		}
		k := key{from, strings.ToLower(f.rcpt)}
		if f.bounce {
			k.rcpt = "" // bounces with one reverse-path share a delivery
		}
		if i, ok := groups[k]; ok {
			out[i].d.Remote = append(out[i].d.Remote, f.targets...)
			continue
		}
		var prefix []byte
		if !f.bounce {
			prefix = append(prefix, "Delivered-To: "+pathString(f.rcpt)+"\r\n"...)
		}
		prefix = append(append(prefix, received...), sig...)
		groups[k] = len(out)
		out = append(out, outDelivery{prefix: prefix, d: &mailstore.Delivery{
			MailFrom: from, Params: transportParams(params, tx),
			Remote: append([]mailstore.RemoteRecipient(nil), f.targets...), SenderAccount: sender,
		}})
	}
	return out, nil
}

// forwardSender is the reverse-path of mail forwarded from one of our
// domains: a null path stays null (RFC 5321 §4.5.5); a submission's own
// address (in our domain, authenticated) stays as it is; any other is
// rewritten with SRS into an address of that domain, so that the
// receiver's SPF check sees a domain that authorises us. Mail that only
// claims one of our domains on port 25 is rewritten too: forwarding it
// unchanged would lend it our SPF authority. A sender SRS cannot rewrite
// (an address literal, a result over RFC 5321's length limit) goes as it
// is, with a log line.
func (s *session) forwardSender(ctx context.Context, tx *transaction, domain string) (string, *reply) {
	if tx.from == "" || s.c.role == roleSubmission {
		return tx.from, nil
	}
	rw, err := s.srv.srs.get(ctx, s.srv)
	if err != nil {
		return "", s.storeFailure("srs key", err)
	}
	a, err := parseAddress(tx.from, tx.params.utf8)
	if err != nil {
		return tx.from, nil
	}
	out, err := rw.Forward(a.local+"@"+a.domain, domain)
	if err != nil {
		s.c.log.Warn("sender not rewritten for forwarding", "err", err)
		return tx.from, nil
	}
	return out, nil
}

// transportParams adds to the DSN parameters those the delivery engine
// needs to send the message on: BODY (RFC 6152) and SMTPUTF8 (RFC 6531).
func transportParams(p map[string]string, tx *transaction) map[string]string {
	if tx.params.body == "" && !tx.params.utf8 {
		return p
	}
	out := make(map[string]string, len(p)+2)
	for k, v := range p {
		out[k] = v
	}
	if tx.params.body != "" {
		out["BODY"] = tx.params.body
	}
	if tx.params.utf8 {
		out["SMTPUTF8"] = "yes"
	}
	return out
}

// deliverAll commits the planned deliveries in order and returns their
// results; verdict is the inbound authentication's (nil on submission). A failure stops at the delivery that failed: those before it
// are committed (so a client that retries after the 4xx sends them
// again; a duplicate, never a loss).
func (s *session) deliverAll(ctx context.Context, plan []outDelivery, verdict *mailauth.Result) ([]mailstore.DeliveryResult, error) {
	results := make([]mailstore.DeliveryResult, 0, len(plan))
	for _, o := range plan {
		body, err := s.spool.reader()
		if err != nil {
			return results, errSpool{err}
		}
		prefix := o.prefix
		if s.c.role == roleInbound {
			// Our Authentication-Results: after the trace fields, forged
			// ones removed (inboundauth.go); forwarded copies keep them
			// too, for the receiver to read.
			prefix, body = s.inboundMessage(prefix, body, verdict)
		}
		o.d.Body = io.MultiReader(bytes.NewReader(prefix), body)
		res, err := s.srv.store.Deliver(ctx, o.d)
		if err != nil {
			return results, err
		}
		results = append(results, res)
	}
	return results, nil
}

// errSpool is a failure to read our own spool.
type errSpool struct{ err error }

func (e errSpool) Error() string { return "spool: " + e.err.Error() }
func (e errSpool) Unwrap() error { return e.err }
