package pop3d

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"

	"github.com/postrider/postrider/mailstore"
)

// msgArg parses the message-number argument of LIST, UIDL, RETR, TOP and
// DELE (RFC 1939 §5: "msg", never a deleted message).
func (s *session) msgArg(arg string) (int, *message, error) {
	n, ok := parseMsgNum(arg)
	if !ok {
		return 0, nil, errReply("", "Invalid message number")
	}
	m, err := s.md.get(n)
	return n, m, err
}

// cmdList implements LIST (RFC 1939 §5): "n size" scan listings with the
// exact wire size (see doc.go, Sizes).
func (s *session) cmdList(c *Command) error {
	if len(c.Args) > 1 {
		return errReply("", "Usage: LIST [msg]")
	}
	if len(c.Args) == 1 {
		n, m, err := s.msgArg(c.Args[0])
		if err != nil {
			return err
		}
		return s.ok(strconv.Itoa(n) + " " + strconv.FormatInt(m.size, 10))
	}
	count, size := s.md.stat()
	s.writeLine(fmt.Sprintf("+OK %d messages (%d octets)", count, size))
	var buf []byte
	for i := range s.md.msgs {
		m := &s.md.msgs[i]
		if m.deleted {
			continue
		}
		buf = strconv.AppendInt(buf[:0], int64(i+1), 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, m.size, 10)
		buf = append(buf, '\r', '\n')
		_, _ = s.w.Write(buf)
	}
	s.writeLine(".")
	return nil
}

// cmdUidl implements UIDL (RFC 1939 §7; values in maildrop.uidl).
func (s *session) cmdUidl(c *Command) error {
	if len(c.Args) > 1 {
		return errReply("", "Usage: UIDL [msg]")
	}
	if len(c.Args) == 1 {
		n, m, err := s.msgArg(c.Args[0])
		if err != nil {
			return err
		}
		return s.ok(strconv.Itoa(n) + " " + s.md.uidl(m))
	}
	s.writeLine("+OK Unique-ID listing follows")
	var buf []byte
	for i := range s.md.msgs {
		m := &s.md.msgs[i]
		if m.deleted {
			continue
		}
		buf = strconv.AppendInt(buf[:0], int64(i+1), 10)
		buf = append(buf, ' ')
		buf = append(buf, s.md.uidl(m)...)
		buf = append(buf, '\r', '\n')
		_, _ = s.w.Write(buf)
	}
	s.writeLine(".")
	return nil
}

// cmdRetr implements RETR (RFC 1939 §7).
func (s *session) cmdRetr(c *Command) error {
	if len(c.Args) != 1 {
		return errReply("", "Usage: RETR msg")
	}
	n, m, err := s.msgArg(c.Args[0])
	if err != nil {
		return err
	}
	s.line = strconv.AppendInt(append(s.line[:0], "+OK "...), m.size, 10)
	s.line = append(s.line, " octets"...)
	sent, err := s.sendMessage(n, m, -1, s.line)
	if err != nil {
		return err
	}
	if sent != m.size {
		// Cannot happen unless the stored CRLF size disagrees with the
		// stored octets; the client was told a wrong size (RFC 1939 §5),
		// so say so loudly.
		s.log.Error("RETR sent a size different from LIST", slog.Uint64("uid", uint64(m.uid)),
			slog.Int64("listed", m.size), slog.Int64("sent", sent))
	}
	mMessagesRetrieved.Inc()
	if s.srv.cfg.MarkSeenOnRetr && !m.seen && !m.retrieved {
		m.retrieved = true // \Seen is stored in batches (flushSeen)
		s.pendingSeen++
	}
	return nil
}

var topOK = []byte("+OK Top of message follows")

// cmdTop implements TOP (RFC 1939 §7): the header, the empty line and the
// first n lines of the body. It does not mark the message \Seen.
func (s *session) cmdTop(c *Command) error {
	if len(c.Args) != 2 {
		return errReply("", "Usage: TOP msg n")
	}
	n, m, err := s.msgArg(c.Args[0])
	if err != nil {
		return err
	}
	lines, ok := parseLineCount(c.Args[1])
	if !ok {
		return errReply("", "Invalid line count")
	}
	_, err = s.sendMessage(n, m, lines, topOK)
	return err
}

// sendMessage sends a message as a multi-line response and returns the
// octets sent (without stuffing and terminator). topLines < 0 sends all of
// it. The message comes from the read-ahead (RETR reads one when the
// message is not there yet, see readahead.go) or, when too large to hold,
// is streamed from the store in bounded memory.
func (s *session) sendMessage(n int, m *message, topLines int64, okLine []byte) (int64, error) {
	var e *aheadEntry
	if !m.gone {
		var err error
		if e, err = s.ahead(n, topLines < 0); err != nil {
			return 0, fmt.Errorf("read messages from %d: %w", m.uid, err)
		}
	}
	switch {
	case m.gone || e != nil && e.Gone:
		return 0, s.removed(n, m)
	case e != nil && e.Whole:
		s.writeLineBytes(okLine)
		var sent int64
		var err error
		if topLines < 0 {
			sent, err = writeWhole(s.w, e.Data, &s.stuffAt)
		} else {
			mw := newMsgWriter(s.w, topLines)
			if _, err = mw.Write(e.Data); err == nil || errors.Is(err, errTopDone) {
				err = mw.finish()
			}
			sent = mw.n
		}
		if err != nil {
			return 0, &abortError{err}
		}
		if topLines < 0 {
			s.ra.sent(n)
		}
		mBytesSent.Add(float64(sent))
		return sent, nil
	}
	return s.streamMessage(n, m, topLines, okLine)
}

// removed answers RETR or TOP of a message another client expunged (IMAP,
// or a POP3 session on another node that got the maildrop after a lock
// expired): the session goes on; the message number stays taken (RFC 1939
// §6 numbering).
func (s *session) removed(n int, m *message) error {
	m.gone = true
	return &replyError{text: fmt.Sprintf("Message %d was removed by another client (e.g. IMAP) during this session", n), noCount: true}
}

// streamMessage streams a message straight from the store through
// msgWriter, in bounded memory.
func (s *session) streamMessage(n int, m *message, topLines int64, okLine []byte) (int64, error) {
	rc, err := s.srv.store.OpenMessage(s.ctx, s.acc.ID, s.md.box.ID, m.uid, 0, -1)
	if errors.Is(err, mailstore.ErrNoSuchMessage) {
		return 0, s.removed(n, m)
	}
	if err != nil {
		return 0, fmt.Errorf("open message %d: %w", m.uid, err)
	}
	defer rc.Close()
	if s.copyBuf == nil {
		s.copyBuf = make([]byte, 32<<10)
	}
	s.writeLineBytes(okLine)
	mw := newMsgWriter(s.w, topLines)
	_, err = io.CopyBuffer(mw, rc, s.copyBuf)
	if err != nil && !errors.Is(err, errTopDone) {
		// The "+OK" is out: a multi-line response cannot be taken back,
		// and a client that saw a terminating "." would keep a truncated
		// message. Closing is the only honest end.
		if mw.err == nil {
			s.log.Error("reading message failed mid-response; closing", slog.Uint64("uid", uint64(m.uid)), slog.Any("err", err))
		}
		return 0, &abortError{err}
	}
	if err := mw.finish(); err != nil {
		return 0, &abortError{err}
	}
	mBytesSent.Add(float64(mw.n))
	return mw.n, nil
}

// cmdDele implements DELE (RFC 1939 §5): the message is only marked; QUIT
// commits (UPDATE state).
func (s *session) cmdDele(c *Command) error {
	if len(c.Args) != 1 {
		return errReply("", "Usage: DELE msg")
	}
	n, m, err := s.msgArg(c.Args[0])
	if err != nil {
		return err
	}
	m.deleted = true
	return s.ok("Message " + strconv.Itoa(n) + " deleted")
}

// cmdRset implements RSET (RFC 1939 §5): unmark every deleted message.
func (s *session) cmdRset(c *Command) error {
	if err := noArgs(c); err != nil {
		return err
	}
	for i := range s.md.msgs {
		s.md.msgs[i].deleted = false
	}
	return s.ok(fmt.Sprintf("Maildrop has %d messages", len(s.md.msgs)))
}
