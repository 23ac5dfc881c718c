package imapd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"unicode/utf8"
)

// The parser reads one command at a time, as its handler asks for the
// arguments: a command is one line, or several lines joined by literals
// (RFC 9051 §2.2.1, §4.3). Everything it reads is bounded by Limits: line
// length, literal size (small before login), number of literals and octets
// held in memory per command, list nesting depth and sequence-set size.
//
// A handler parses all of its arguments (ending with p.end) before it acts,
// so a syntax error never leaves a half-done operation. After an error the
// rest of the command is skipped by discard, which also reads and drops a
// non-synchronizing literal the client is already sending (RFC 7888 §4).
type parser struct {
	c    *conn
	line []byte // the current line, without CRLF
	pos  int    // next unread octet of line
	done bool   // the command has been read to its end

	nlit  int   // literals read in this command
	mem   int64 // octets of literals held in memory in this command
	depth int   // current nesting of parenthesized lists

	// stream is the literal being streamed to an APPEND, if any.
	stream *literalReader
}

// ioError wraps a failure of the connection while reading: the session
// cannot go on.
type ioError struct{ err error }

func (e *ioError) Error() string { return "read: " + e.err.Error() }
func (e *ioError) Unwrap() error { return e.err }

// literal describes a literal announcement "{n}", "{n+}" or "~{n}".
type literal struct {
	n      int64
	sync   bool // synchronizing: the client waits for "+" (RFC 9051 §7.5)
	binary bool // literal8, "~{n}" (RFC 3516 §4.1)
}

var errLineTooLong = errBye(codeTooBig, "Command line too long")

// begin reads the first line of a new command.
func (p *parser) begin() error {
	p.nlit, p.mem, p.depth, p.done, p.stream = 0, 0, 0, false, nil
	if cap(p.line) > 2*writeBufSize {
		p.line = nil // do not keep a large buffer on an idle connection
	}
	return p.readLine()
}

// readLine reads the next line of the command into p.line.
func (p *parser) readLine() error {
	p.line, p.pos = p.line[:0], 0
	return p.readMore()
}

// readMore reads up to the end of the line, appending to p.line: after a
// read error the octets read so far stay in p.line and a second call goes
// on where the first stopped (IDLE is woken this way).
func (p *parser) readMore() error {
	max := p.c.srv.limits.MaxLineLength
	for {
		frag, err := p.c.br.ReadSlice('\n')
		if len(p.line)+len(frag) > max+2 {
			return errLineTooLong
		}
		p.line = append(p.line, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return &ioError{err}
		}
	}
	p.line = bytes.TrimSuffix(p.line, []byte{'\n'})
	p.line = bytes.TrimSuffix(p.line, []byte{'\r'})
	return nil
}

func (p *parser) atEnd() bool { return p.pos >= len(p.line) }

// peek returns the next octet, or 0 at the end of the line.
func (p *parser) peek() byte {
	if p.pos >= len(p.line) {
		return 0
	}
	return p.line[p.pos]
}

// accept consumes b if it is next.
func (p *parser) accept(b byte) bool {
	if p.peek() == b && !p.atEnd() {
		p.pos++
		return true
	}
	return false
}

func (p *parser) expect(b byte) error {
	if !p.accept(b) {
		if p.atEnd() {
			return errBad("Missing %q", b)
		}
		return errBad("Expected %q", b)
	}
	return nil
}

func (p *parser) sp() error {
	if !p.accept(' ') {
		return errBad("Missing arguments")
	}
	return nil
}

// end checks that the command has no further arguments.
func (p *parser) end() error {
	if !p.atEnd() {
		return errBad("Unexpected extra arguments")
	}
	p.done = true
	return nil
}

// acceptWord consumes w (case-insensitively) if the next octets are w
// followed by a non-atom octet.
func (p *parser) acceptWord(w string) bool {
	end := p.pos + len(w)
	if end > len(p.line) || !strings.EqualFold(string(p.line[p.pos:end]), w) {
		return false
	}
	if end < len(p.line) && isAtomChar(p.line[end]) {
		return false
	}
	p.pos = end
	return true
}

// scan consumes the longest run of octets satisfying ok.
func (p *parser) scan(ok func(byte) bool) string {
	start := p.pos
	for p.pos < len(p.line) && ok(p.line[p.pos]) {
		p.pos++
	}
	return string(p.line[start:p.pos])
}

// tag reads a command tag: 1*<ASTRING-CHAR except "+"> (RFC 9051 §9).
func (p *parser) tag() (string, error) {
	t := p.scan(func(c byte) bool { return isAstringChar(c) && c != '+' })
	if t == "" || len(t) > 64 {
		return "", errBad("Invalid tag")
	}
	return t, nil
}

// atom reads 1*ATOM-CHAR.
func (p *parser) atom() (string, error) {
	a := p.scan(isAtomChar)
	if a == "" {
		return "", errBad("Expected an atom")
	}
	return a, nil
}

// number reads a 32-bit number (RFC 9051 §9 number).
func (p *parser) number() (uint32, error) {
	n, err := p.number64()
	if err != nil {
		return 0, err
	}
	if n > 0xffffffff {
		return 0, errBad("Number out of range")
	}
	return uint32(n), nil
}

// nzNumber reads a non-zero 32-bit number.
func (p *parser) nzNumber() (uint32, error) {
	n, err := p.number()
	if err == nil && n == 0 {
		err = errBad("Zero is not allowed here")
	}
	return n, err
}

// number64 reads a 63-bit number (RFC 9051 §9 number64).
func (p *parser) number64() (uint64, error) {
	start := p.pos
	var n uint64
	for p.pos < len(p.line) && p.line[p.pos] >= '0' && p.line[p.pos] <= '9' {
		n = n*10 + uint64(p.line[p.pos]-'0')
		if n > 1<<63-1 {
			return 0, errBad("Number out of range")
		}
		p.pos++
	}
	if p.pos == start {
		return 0, errBad("Expected a number")
	}
	return n, nil
}

// quoted reads a quoted string (RFC 9051 §9 quoted). UTF-8 is accepted
// (RFC 9051 QUOTED-CHAR includes UTF8-2..4; RFC 6855 §3).
func (p *parser) quoted() (string, error) {
	if err := p.expect('"'); err != nil {
		return "", err
	}
	var b strings.Builder
	for {
		if p.atEnd() {
			return "", errBad("Unterminated quoted string")
		}
		c := p.line[p.pos]
		p.pos++
		switch c {
		case '"':
			s := b.String()
			if !utf8.ValidString(s) {
				return "", errBad("Invalid UTF-8 in quoted string")
			}
			return s, nil
		case '\\':
			if p.atEnd() || (p.line[p.pos] != '"' && p.line[p.pos] != '\\') {
				return "", errBad("Invalid escape in quoted string")
			}
			c = p.line[p.pos]
			p.pos++
		case 0:
			return "", errBad("NUL in quoted string")
		}
		b.WriteByte(c)
	}
}

// literalHead parses a literal announcement, which must end the line.
func (p *parser) literalHead() (literal, error) {
	var l literal
	if p.accept('~') {
		l.binary = true
	}
	if err := p.expect('{'); err != nil {
		return l, err
	}
	n, err := p.number64()
	if err != nil {
		return l, err
	}
	l.n = int64(n)
	l.sync = !p.accept('+')
	if err := p.expect('}'); err != nil {
		return l, err
	}
	if !p.atEnd() {
		return l, errBad("Literal announcement must end the line")
	}
	return l, nil
}

// checkLiteral applies the count and size limits to a literal about to be
// read. A refused synchronizing literal is simply never asked for; a refused
// non-synchronizing one is already on its way, so the connection is closed
// unless discard can skip it.
func (p *parser) checkLiteral(l literal, max int64) error {
	p.nlit++
	if p.nlit > p.c.srv.limits.MaxLiterals {
		return errBad("Too many literals in one command")
	}
	if l.n > max {
		return errNo(codeTooBig, "Literal too large")
	}
	return nil
}

// literalMax is the largest literal held in memory in the current state.
func (p *parser) literalMax() int64 {
	if p.c.state == stateNotAuth {
		return p.c.srv.limits.MaxLiteralPreAuth
	}
	return p.c.srv.limits.MaxLiteral
}

// literalBytes reads a literal into memory.
func (p *parser) literalBytes(l literal) ([]byte, error) {
	max := p.literalMax()
	if err := p.checkLiteral(l, max); err != nil {
		return nil, err
	}
	if p.mem+l.n > p.c.srv.limits.MaxCommandLiteralBytes {
		return nil, errNo(codeTooBig, "Command too large")
	}
	if l.sync {
		if err := p.c.continueReq("Ready for literal data"); err != nil {
			return nil, err
		}
	}
	buf := make([]byte, l.n)
	if _, err := io.ReadFull(p.c.br, buf); err != nil {
		return nil, &ioError{err}
	}
	p.mem += l.n
	if err := p.readLine(); err != nil {
		return nil, err
	}
	return buf, nil
}

// string reads a quoted string or a literal (RFC 9051 §9 string).
func (p *parser) string() (string, error) {
	switch p.peek() {
	case '"':
		return p.quoted()
	case '{':
		l, err := p.literalHead()
		if err != nil {
			return "", err
		}
		b, err := p.literalBytes(l)
		if err != nil {
			return "", err
		}
		if bytes.IndexByte(b, 0) >= 0 {
			return "", errBad("NUL in literal")
		}
		return string(b), nil
	case '~':
		return "", errBad("literal8 not allowed here")
	}
	return "", errBad("Expected a string")
}

// stringNext reports whether a quoted string, a literal or a literal8
// ("~{", never an atom starting with "~") comes next.
func (p *parser) stringNext() bool {
	switch p.peek() {
	case '"', '{':
		return true
	case '~':
		return p.pos+1 < len(p.line) && p.line[p.pos+1] == '{'
	}
	return false
}

// astring reads an atom-like string, a quoted string or a literal.
func (p *parser) astring() (string, error) {
	if p.stringNext() {
		return p.string()
	}
	s := p.scan(isAstringChar)
	if s == "" {
		return "", errBad("Expected a string")
	}
	return s, nil
}

// listMailbox reads a LIST pattern: 1*list-char / string (RFC 9051 §9).
func (p *parser) listMailbox() (string, error) {
	if p.stringNext() {
		return p.string()
	}
	s := p.scan(isListChar)
	if s == "" {
		return "", errBad("Expected a mailbox pattern")
	}
	return s, nil
}

// nilOr reports whether the next token is NIL (consuming it).
func (p *parser) acceptNIL() bool { return p.acceptWord("NIL") }

// list parses "(" [elem *(SP elem)] ")" calling elem for each element,
// bounding nesting depth.
func (p *parser) list(elem func() error) error {
	if err := p.expect('('); err != nil {
		return err
	}
	if err := p.enter(); err != nil {
		return err
	}
	defer p.leave()
	if p.accept(')') {
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		if p.accept(')') {
			return nil
		}
		if err := p.sp(); err != nil {
			return errBad("Expected ')' or a space in list")
		}
	}
}

// enter and leave bound recursion (lists, and NOT/OR in SEARCH).
func (p *parser) enter() error {
	p.depth++
	if p.depth > p.c.srv.limits.MaxDepth {
		return errBad("Too deeply nested")
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// trailingLiteral reports a literal announced at the end of line. An atom
// cannot contain "{" and a quoted string ends with DQUOTE, so "{n}" or
// "{n+}" at the end of a line is always a literal announcement.
func trailingLiteral(line []byte) (literal, bool) {
	var l literal
	if len(line) < 3 || line[len(line)-1] != '}' {
		return l, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return l, false
	}
	digits := line[i+1 : len(line)-1]
	l.sync = true
	if len(digits) > 0 && digits[len(digits)-1] == '+' {
		l.sync = false
		digits = digits[:len(digits)-1]
	}
	if len(digits) == 0 {
		return l, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return l, false
		}
	}
	if len(digits) > 18 {
		l.n = 1<<63 - 1 // absurd: too large to skip
	} else {
		for _, c := range digits {
			l.n = l.n*10 + int64(c-'0')
		}
	}
	l.binary = i > 0 && line[i-1] == '~'
	return l, true
}

// discard skips the rest of a command after an error: the rest of a
// streamed literal, and every non-synchronizing literal announced at the end
// of a line with the line after it. A synchronizing literal that was not
// asked for will not be sent (RFC 9051 §7.5), so the command ends there.
func (p *parser) discard() error {
	if p.done {
		return nil
	}
	p.done = true
	if s := p.stream; s != nil && !s.finished {
		if s.remaining > p.discardMax() {
			return errBye(codeTooBig, "Literal too large")
		}
		if _, err := io.CopyN(io.Discard, p.c.br, s.remaining); err != nil {
			return &ioError{err}
		}
		s.remaining, s.finished = 0, true
		if err := p.readLine(); err != nil {
			return err
		}
	}
	for skipped := 0; ; skipped++ {
		l, ok := trailingLiteral(p.line)
		if !ok || l.sync {
			p.line, p.pos = p.line[:0], 0
			return nil
		}
		if l.n > p.discardMax() || skipped >= p.c.srv.limits.MaxLiterals {
			return errBye(codeTooBig, "Literal too large")
		}
		if _, err := io.CopyN(io.Discard, p.c.br, l.n); err != nil {
			return &ioError{err}
		}
		if err := p.readLine(); err != nil {
			return err
		}
	}
}

// discardMax is the largest non-synchronizing literal skipped rather than
// answered by closing the connection.
func (p *parser) discardMax() int64 {
	if p.c.state == stateNotAuth {
		return p.c.srv.limits.MaxLiteralPreAuth
	}
	if m := p.c.srv.cfg.MaxMessageSize; m > p.c.srv.limits.MaxLiteral {
		return m
	}
	return p.c.srv.limits.MaxLiteral
}

// literalReader streams a literal (the message of an APPEND) from the
// connection. When the last octet has been read it reads the rest of the
// command line and fails unless the command ends there, so that a store
// only commits a message whose command was complete.
type literalReader struct {
	p         *parser
	remaining int64
	trailer   string // what must follow the literal on its line (")" for UTF8 APPEND)
	// open: the command may go on after the literal (and its trailer):
	// the line after it is read and left to the caller to parse
	// (MULTIAPPEND, CATENATE), instead of having to end there.
	open     bool
	finished bool // the literal and the line after it have been read
	err      error
}

var errAppendTrailing = errBad("Unexpected data after the message literal")

// streamLiteral starts streaming a literal whose size the caller has
// checked, sending the continuation request for a synchronizing one.
func (p *parser) streamLiteral(l literal, trailer string) (*literalReader, error) {
	p.nlit++
	if l.sync {
		if err := p.c.continueReq("Ready for literal data"); err != nil {
			return nil, err
		}
	}
	p.stream = &literalReader{p: p, remaining: l.n, trailer: trailer}
	return p.stream, nil
}

func (r *literalReader) Read(b []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.remaining == 0 {
		if !r.finished {
			r.finished = true
			if err := r.p.readLine(); err != nil {
				r.err = err
				return 0, err
			}
			for i := 0; i < len(r.trailer); i++ {
				r.p.accept(r.trailer[i])
			}
			if r.open {
				if !strings.HasPrefix(string(r.p.line), r.trailer) {
					r.err = errBad("Expected %q after the literal", r.trailer)
					return 0, r.err
				}
				r.p.pos = len(r.trailer)
				return 0, io.EOF
			}
			if r.p.pos != len(r.trailer) || !r.p.atEnd() {
				r.err = errAppendTrailing
				return 0, r.err
			}
			r.p.done = true
		}
		return 0, io.EOF
	}
	if int64(len(b)) > r.remaining {
		b = b[:r.remaining]
	}
	n, err := r.p.c.br.Read(b)
	r.remaining -= int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		r.err = &ioError{err}
		return n, r.err
	}
	return n, nil
}
