package smtpd

import (
	"context"
	"errors"
	"strings"

	"github.com/postrider/postrider/internal/srs"
	"github.com/postrider/postrider/mailstore"
)

// session is the mail side of one connection: the authenticated account
// and the mail transaction. Its methods run on the connection's goroutine
// and return nil or the *reply refusing the command.
type session struct {
	srv *Server
	c   *conn

	account   *mailstore.Account // after AUTH (submission)
	addresses []string           // the account's own addresses, lower case
	tx        *transaction
	msg       msgWriter // the message being received
	spool     spool     // reused across messages
}

// transaction is one MAIL ... DATA/BDAT sequence.
type transaction struct {
	from     string // reverse-path; "" is the null path (RFC 5321 §4.5.5)
	params   mailParams
	rcpts    []txRcpt
	accounts []int64 // distinct accounts, in order of first appearance
	// remote are the recipients of a submission in other domains, queued
	// for outbound delivery with the local copies; forwards the external
	// targets of recipients that are aliases, and the original senders of
	// bounces to our SRS addresses (outbound.go).
	remote   []mailstore.RemoteRecipient
	forwards []forward
	bdat     bool    // BDAT chunks are being received (RFC 3030 §2)
	spf      *spfJob // inbound SPF check, from the first recipient on
}

// empty reports whether the transaction has no recipient yet.
func (tx *transaction) empty() bool {
	return len(tx.accounts) == 0 && len(tx.remote) == 0 && len(tx.forwards) == 0
}

type txRcpt struct {
	addr   string
	params rcptParams
}

// Reset ends the transaction (RSET, EHLO, STARTTLS, the end of a message),
// dropping any message being received.
func (s *session) Reset() {
	if s.tx != nil && s.tx.bdat {
		s.spool.release()
	}
	if s.tx != nil {
		s.tx.spf.stop()
	}
	s.tx = nil
}

// release frees the session's resources when the connection ends.
func (s *session) release() {
	s.Reset()
	s.spool.release()
}

// ctx is the context of one store call: the connection's, bounded by
// DeliverTimeout.
func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.c.fc.Ctx, s.srv.cfg.DeliverTimeout)
}

// cmdMail starts a transaction (RFC 5321 §4.1.1.2).
func cmdMail(c *conn, arg string) {
	from, p, r := parseMailArg(arg, c.cfg.MaxMessageSize)
	if r == nil {
		r = c.sess.Mail(from, p)
	}
	if r == nil {
		r = replyErr(250, 2, 1, 0, "Sender OK")
	}
	c.reply(r)
}

// cmdRcpt adds a recipient (RFC 5321 §4.1.1.3).
func cmdRcpt(c *conn, arg string) {
	s := c.sess
	if s.tx == nil {
		c.reply(replyErr(503, 5, 5, 1, "MAIL first (RFC 5321 §4.1.4)"))
		return
	}
	to, p, r := parseRcptArg(arg)
	if r == nil {
		r = s.Rcpt(to, p)
	}
	if r == nil {
		r = replyErr(250, 2, 1, 5, "Recipient OK")
	}
	c.reply(r)
}

// Mail starts a transaction.
func (s *session) Mail(from string, p mailParams) *reply {
	if s.tx != nil {
		return replyErr(503, 5, 5, 1, "Nested MAIL command (RFC 5321 §4.1.4)")
	}
	sub := s.c.role == roleSubmission
	if sub && s.account == nil {
		return replyErr(530, 5, 7, 0, "Authentication required (RFC 4954 §6)")
	}
	if from != "" {
		if _, err := parseAddress(from, p.utf8); err != nil {
			return senderSyntaxReply(err)
		}
	}
	if sub {
		if from == "" || !s.owns(from) {
			rcptRejected.WithLabelValues("sender_not_owned").Inc()
			return replyErr(553, 5, 7, 1, "Sender address not owned by the authenticated user")
		}
	}
	s.tx = &transaction{from: from, params: p}
	return nil
}

// Rcpt adds a recipient if the store resolves it (or, on submission, if
// it is a valid remote address).
func (s *session) Rcpt(to string, p rcptParams) *reply {
	tx := s.tx
	if len(tx.rcpts) >= s.srv.cfg.MaxRecipients {
		// RFC 5321 §4.5.3.1.10: 452, and the client sends the rest later.
		return replyErr(452, 4, 5, 3, "Too many recipients")
	}
	ctx, cancel := s.ctx()
	defer cancel()
	t, r := s.resolve(ctx, to, p, tx)
	if r != nil {
		return r
	}
	tx.rcpts = append(tx.rcpts, txRcpt{addr: to, params: p})
	if t.remote != nil {
		tx.remote = append(tx.remote, *t.remote)
	}
	if t.forward != nil {
		tx.forwards = append(tx.forwards, *t.forward)
	}
	for _, a := range t.accounts {
		dup := false
		for _, have := range tx.accounts {
			if have == a {
				dup = true
				break
			}
		}
		if !dup {
			tx.accounts = append(tx.accounts, a)
		}
	}
	s.startSPF(tx)
	return nil
}

// resolve applies the relay rules and quota check to one recipient and
// returns where it goes: local accounts, the external targets of an
// alias, the original sender of a bounce to one of our SRS addresses, or
// (submission only) a remote recipient. Port 25 never relays: a
// recipient outside our domains is refused there.
func (s *session) resolve(ctx context.Context, to string, p rcptParams, tx *transaction) (rcptTarget, *reply) {
	sub := s.c.role == roleSubmission
	denied := func() (rcptTarget, *reply) {
		rcptRejected.WithLabelValues("relay_denied").Inc()
		return rcptTarget{}, replyErr(554, 5, 7, 1, "Relay access denied")
	}
	a, err := parseAddress(to, tx.params.utf8)
	if err != nil {
		rcptRejected.WithLabelValues("syntax").Inc()
		return rcptTarget{}, recipientSyntaxReply(err)
	}
	if a.literal {
		// Address literals (RFC 5321 §4.1.3) never name our domains,
		// and remote mail goes to domains, by their MX.
		if sub {
			rcptRejected.WithLabelValues("syntax").Inc()
			return rcptTarget{}, replyErr(553, 5, 1, 3, "Address literals are not accepted as recipients")
		}
		return denied()
	}
	if srs.IsSRS(a.local) {
		if t, r, ok := s.resolveSRS(ctx, a, p); ok {
			return t, r
		}
	}
	var res mailstore.Resolution
	if a.domain == barePostmasterDomain && strings.EqualFold(a.local, "postmaster") {
		res, err = s.resolvePostmaster(ctx)
	} else {
		res, err = s.srv.rcache.resolve(ctx, s.srv.store, a.local+"@"+a.domain)
	}
	switch {
	case err == nil:
	case errors.Is(err, mailstore.ErrNotLocalDomain):
		if sub {
			return s.remoteRecipient(a, p)
		}
		return denied()
	case errors.Is(err, mailstore.ErrInvalidAddress), errors.Is(err, mailstore.ErrNoSuchRecipient):
		// A local part the store cannot hold ("user%host", quoted
		// strings): unknown user if the domain is ours, else relay (or,
		// for submission, a remote recipient: only its domain may
		// interpret its local part, RFC 5321 §2.4).
		if errors.Is(err, mailstore.ErrInvalidAddress) {
			local, lerr := s.srv.store.IsLocalDomain(ctx, a.domain)
			if lerr != nil {
				return rcptTarget{}, s.storeFailure("is local domain", lerr)
			}
			if !local && sub {
				return s.remoteRecipient(a, p)
			}
			if !local {
				return denied()
			}
		}
		rcptRejected.WithLabelValues("unknown_user").Inc()
		return rcptTarget{}, replyErr(550, 5, 1, 1, "No such user here")
	default:
		return rcptTarget{}, s.storeFailure("resolve recipient", err)
	}
	ids := make([]int64, 0, len(res.Accounts))
	for _, acct := range res.Accounts {
		if acct.QuotaLimit > 0 || acct.MessageLimit > 0 {
			q, err := s.srv.store.Quota(ctx, acct.ID)
			if err != nil {
				return rcptTarget{}, s.storeFailure("quota usage", err)
			}
			// A full mailbox is a permanent failure, 552 with the enhanced
			// status X.2.2 "mailbox full" (RFC 5321 §4.5.3.1.10, RFC 3463
			// §3.3), as Dovecot's LMTP answers by default: the sender
			// bounces at once instead of retrying for days. The store
			// checks again at delivery (replies.go), with the same reply.
			overSize := q.StorageLimit > 0 &&
				(q.StorageUsed >= q.StorageLimit || q.StorageUsed+tx.params.size > q.StorageLimit)
			overCount := q.MessagesLimit > 0 && q.MessagesUsed >= q.MessagesLimit
			if overSize || overCount {
				rcptRejected.WithLabelValues("over_quota").Inc()
				return rcptTarget{}, replyErr(552, 5, 2, 2, "Mailbox full: quota exceeded")
			}
		}
		ids = append(ids, acct.ID)
	}
	t := rcptTarget{accounts: ids}
	if len(res.Forwards) > 0 {
		t.forward = forwardOf(a, p, res.Forwards)
	}
	if len(ids) == 0 && t.forward == nil {
		rcptRejected.WithLabelValues("unknown_user").Inc()
		return rcptTarget{}, replyErr(550, 5, 1, 1, "No such user here")
	}
	return t, nil
}

// owns reports whether the authenticated account may use addr as sender:
// one of its addresses, compared case-insensitively, with a +tag allowed.
func (s *session) owns(addr string) bool {
	own := s.addresses
	a := strings.ToLower(addr)
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return false
	}
	local, domain := a[:at], strings.TrimSuffix(a[at+1:], ".")
	if i := strings.Index(local, mailstore.SubaddressDelimiter); i > 0 {
		local = local[:i]
	}
	if d, err := asciiDomain(domain); err == nil && !isASCII(domain) {
		domain = d // U-labels (RFC 6531 §3.3): our addresses are stored in A-labels
	}
	a = local + "@" + domain
	for _, o := range own {
		if o == a {
			return true
		}
	}
	return false
}

func (s *session) storeFailure(op string, err error) *reply {
	s.c.log.Error("store failure", "op", op, "err", err)
	return replyErr(451, 4, 3, 0, "Temporary local problem, please try again later")
}
