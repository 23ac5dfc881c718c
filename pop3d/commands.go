package pop3d

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/postrider/postrider/mailstore"
)

type cmdDef struct {
	states state
	fn     func(*session, *Command) error
}

// commands is the command table: which command is valid in which state
// (RFC 1939 §§4-7, RFC 2449, RFC 2595, RFC 5034, RFC 6856).
var commands map[string]cmdDef

func init() {
	const (
		authz = stateAuthorization
		trans = stateTransaction
	)
	commands = map[string]cmdDef{
		"CAPA": {authz | trans, (*session).cmdCapa},
		"QUIT": {authz | trans, (*session).cmdQuit},
		"USER": {authz, (*session).cmdUser},
		"PASS": {authz, (*session).cmdPass},
		"AUTH": {authz, (*session).cmdAuth},
		"APOP": {authz, (*session).cmdApop},
		"STLS": {authz, (*session).cmdStls},
		"UTF8": {authz, (*session).cmdUTF8},
		"STAT": {trans, (*session).cmdStat},
		"LIST": {trans, (*session).cmdList},
		"UIDL": {trans, (*session).cmdUidl},
		"RETR": {trans, (*session).cmdRetr},
		"TOP":  {trans, (*session).cmdTop},
		"DELE": {trans, (*session).cmdDele},
		"RSET": {trans, (*session).cmdRset},
		"NOOP": {trans, (*session).cmdNoop},
	}
}

// noArgs rejects arguments to commands that take none.
func noArgs(c *Command) error {
	if len(c.Args) != 0 {
		return errReply("", c.Name+" takes no arguments")
	}
	return nil
}

// cmdCapa implements RFC 2449 §5. Only what is true is listed: USER and
// the plaintext SASL mechanisms only where they may be used (RFC 2595 §2.3
// style policy), STLS only before TLS, no LOGIN-DELAY (not enforced) and
// no APOP.
func (s *session) cmdCapa(c *Command) error {
	if err := noArgs(c); err != nil {
		return err
	}
	s.writeLine("+OK Capability list follows")
	s.writeLine("TOP")        // RFC 2449 §6.1
	s.writeLine("UIDL")       // RFC 2449 §6.8
	s.writeLine("RESP-CODES") // RFC 2449 §6.4
	s.writeLine("PIPELINING") // RFC 2449 §6.6
	// RFC 2449 §6.7: the server never deletes mail by itself.
	s.writeLine("EXPIRE NEVER")
	// RFC 6856 §2: UTF-8 mode; USER: UTF-8 user names and passwords.
	s.writeLine("UTF8 USER")
	if s.state == stateAuthorization {
		s.writeLine("AUTH-RESP-CODE") // RFC 3206 §6
		if s.plaintextOK() {
			s.writeLine("USER") // RFC 2449 §6.2
		}
		if m := s.mechanisms(); len(m) > 0 {
			line := "SASL" // RFC 2449 §6.3, RFC 5034 §3
			for _, x := range m {
				line += " " + x
			}
			s.writeLine(line)
		}
		if s.srv.cfg.TLS != nil && !s.tls {
			s.writeLine("STLS") // RFC 2595 §4
		}
	}
	s.writeLine("IMPLEMENTATION Postrider") // RFC 2449 §6.9
	s.writeLine(".")
	return nil
}

// cmdQuit implements QUIT (RFC 1939 §5 and §6): in the TRANSACTION state it
// enters UPDATE and commits the deletions.
func (s *session) cmdQuit(c *Command) error {
	if err := noArgs(c); err != nil {
		return err
	}
	s.closing = true
	if s.state != stateTransaction {
		return s.ok(s.srv.cfg.Hostname + " POP3 server signing off")
	}
	n, err := s.update()
	if err != nil {
		s.log.Error("UPDATE failed", slog.Any("err", err))
		// RFC 1939 §6: "-ERR some deleted messages not removed".
		text := "Some deleted messages not removed, try again later"
		if errors.Is(err, errLockLost) {
			text = "Maildrop lock lost, no messages removed"
		}
		return &replyError{code: "SYS/TEMP", text: text, noCount: true, close: true}
	}
	return s.ok(fmt.Sprintf("%s POP3 server signing off (%d messages deleted)", s.srv.cfg.Hostname, n))
}

var errLockLost = errors.New("maildrop lock lost")

// update is the UPDATE state (RFC 1939 §6). Messages marked deleted are
// expunged from INBOX (IMAP clients see them vanish through the usual
// mod-sequences and notifications), or with KeepDeleted get HiddenKeyword.
// Messages already expunged by another client are ignored by the store, so
// deleting them is not an error. Retrieved messages get \Seen.
func (s *session) update() (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	// The lock must still be ours: otherwise another session may have its
	// own view of the maildrop by now.
	if !s.lease.held() {
		return 0, errLockLost
	}
	var del []uint32
	for i := range s.md.msgs {
		if s.md.msgs[i].deleted {
			del = append(del, s.md.msgs[i].uid)
		}
	}
	keep := s.srv.cfg.KeepDeleted
	s.state = 0 // UPDATE: the session no longer holds a maildrop view
	if len(del) > 0 {
		set := mailstore.UIDs(del...)
		if keep {
			if _, err := s.srv.store.StoreFlags(ctx, s.acc.ID, s.md.box.ID, set, mailstore.FlagsAdd,
				mailstore.Flags{Keywords: []string{HiddenKeyword}}, 0); err != nil {
				return 0, fmt.Errorf("hide deleted messages: %w", err)
			}
			mMessagesDeleted.WithLabelValues("hidden").Add(float64(len(del)))
		} else {
			if _, err := s.srv.store.Expunge(ctx, s.acc.ID, s.md.box.ID, set, false); err != nil {
				return 0, fmt.Errorf("expunge deleted messages: %w", err)
			}
			mMessagesDeleted.WithLabelValues("expunged").Add(float64(len(del)))
		}
		s.log.Info("maildrop updated", slog.Int("deleted", len(del)), slog.Bool("kept_for_imap", keep))
	}
	// The deletions are what the lock protects (RFC 1939 §8); the \Seen
	// marks of the retrieved messages are not POP3 state and are set after
	// the lock is given back, so that a client that reconnects at once does
	// not wait for them (3,000 marks took 90 ms here). They are still
	// stored before the +OK.
	s.releaseLease()
	if err := s.flushSeen(ctx, !keep); err != nil {
		s.log.Warn("cannot mark retrieved messages seen", slog.Any("err", err))
	}
	return len(del), nil
}

// flushSeen stores \Seen on the retrieved messages (Config.MarkSeenOnRetr).
// skipDeleted leaves out messages marked for deletion (about to be
// expunged anyway).
func (s *session) flushSeen(ctx context.Context, skipDeleted bool) error {
	if s.pendingSeen == 0 {
		return nil
	}
	var uids []uint32
	for i := range s.md.msgs {
		m := &s.md.msgs[i]
		if m.retrieved && !(skipDeleted && m.deleted) {
			uids = append(uids, m.uid)
		}
	}
	s.lastSeenFlush = time.Now()
	if len(uids) == 0 {
		return nil
	}
	if _, err := s.srv.store.StoreFlags(ctx, s.acc.ID, s.md.box.ID, mailstore.UIDs(uids...), mailstore.FlagsAdd,
		mailstore.Flags{System: mailstore.FlagSeen}, 0); err != nil {
		return err
	}
	for i := range s.md.msgs {
		m := &s.md.msgs[i]
		if m.retrieved && !(skipDeleted && m.deleted) {
			m.retrieved = false
			m.seen = true
			s.pendingSeen--
		}
	}
	return nil
}

// maybeFlushSeen writes pending \Seen marks now and then during a long
// session, so that IMAP clients see them without waiting for QUIT.
func (s *session) maybeFlushSeen() {
	if s.pendingSeen == 0 || s.state != stateTransaction || time.Since(s.lastSeenFlush) < seenFlushInterval {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if err := s.flushSeen(ctx, true); err != nil {
		s.log.Warn("cannot mark retrieved messages seen", slog.Any("err", err))
	}
}

// cmdNoop implements NOOP (RFC 1939 §5).
func (s *session) cmdNoop(c *Command) error {
	if err := noArgs(c); err != nil {
		return err
	}
	return s.ok("")
}

// cmdUTF8 implements RFC 6856 §2: UTF-8 mode, valid before login only.
// Messages are always sent as stored (Postrider does not downgrade
// internationalized messages, RFC 6857), so the mode changes nothing on
// the wire; it is recorded for logging and future use.
func (s *session) cmdUTF8(c *Command) error {
	if err := noArgs(c); err != nil {
		return err
	}
	s.utf8 = true
	return s.ok("UTF8 mode enabled")
}

// cmdApop answers APOP (RFC 1939 §7), which Postrider does not offer: it
// needs the plaintext password on the server.
func (s *session) cmdApop(*Command) error {
	return errReply("", "APOP is not supported; use USER/PASS or AUTH (over TLS)")
}

// cmdStat implements STAT (RFC 1939 §5).
func (s *session) cmdStat(c *Command) error {
	if err := noArgs(c); err != nil {
		return err
	}
	n, size := s.md.stat()
	return s.ok(strconv.Itoa(n) + " " + strconv.FormatInt(size, 10))
}
