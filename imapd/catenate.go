package imapd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/postrider/postrider/imapd/imapmsg"
	"github.com/postrider/postrider/mailstore"
)

// CATENATE (RFC 4469): a message of an APPEND built from TEXT literals and
// URL parts, IMAP URLs (RFC 5092) naming a message, or a section of one,
// in the user's own mailboxes. Parts are parsed and read one after the
// other as the store reads the body, so a part is never held in memory
// (but a HEADER.FIELDS section, bounded by maxFilterHeader).
const (
	// maxCatenateParts bounds the parts of one message.
	maxCatenateParts = 64
	// maxURLLength bounds an IMAP URL (a mailbox name is at most
	// mailstore's name limit, a section a few hundred octets).
	maxURLLength = 2048
	// urlReadTimeout bounds the reading of one URL part: it runs while
	// the store may hold a pooled connection for the command's
	// transaction, and must give up rather than wait for ever for another.
	urlReadTimeout = 60 * time.Second
)

// catReader is the body of one CATENATE message (RFC 4469 §5 cat-part
// list, after "CATENATE (").
type catReader struct {
	a      *appendCmd
	cur    io.Reader
	closer func()
	parts  int
	size   int64 // octets of the parts so far
	done   bool
	err    error
}

func (r *catReader) Read(b []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for {
		if r.cur != nil {
			n, err := r.cur.Read(b)
			if err == io.EOF {
				r.closeCur()
				if n > 0 {
					return n, nil
				}
				continue
			}
			if err != nil {
				r.closeCur()
				r.err = err
				r.a.fail(err)
			}
			return n, err
		}
		if r.done {
			return 0, io.EOF
		}
		if err := r.nextPart(); err != nil {
			r.err = err
			r.a.fail(err)
			return 0, err
		}
	}
}

func (r *catReader) closeCur() {
	if r.closer != nil {
		r.closer()
		r.closer = nil
	}
	r.cur = nil
}

// nextPart parses the next cat-part and makes it the current reader, or
// ends the message at ")".
func (r *catReader) nextPart() error {
	a := r.a
	c, p := a.c, &a.c.p
	if r.parts > 0 {
		if p.accept(')') {
			r.done = true
			if r.size == 0 {
				return errNo(codeCannot, "Empty message")
			}
			return nil
		}
		if err := p.sp(); err != nil {
			return errBad("Expected SP or ) in CATENATE")
		}
	}
	if r.parts++; r.parts > maxCatenateParts {
		return errNo(codeLimit, "Too many CATENATE parts (at most "+strconv.Itoa(maxCatenateParts)+")")
	}
	max := c.srv.cfg.MaxMessageSize
	switch {
	case p.acceptWord("TEXT"), p.acceptWord("UTF8"):
		utf8 := strings.EqualFold(string(p.line[p.pos-4:p.pos]), "UTF8")
		if err := p.sp(); err != nil {
			return err
		}
		trailer := ""
		if utf8 {
			// RFC 6855 §4: cat-part =/ "UTF8" SP "(" literal8 ")".
			if !c.utf8 {
				return errBad("UTF8 APPEND needs ENABLE UTF8=ACCEPT")
			}
			if err := p.expect('('); err != nil {
				return err
			}
			if p.peek() != '~' {
				return errBad("UTF8 APPEND needs a literal8")
			}
			trailer = ")"
		}
		if p.peek() != '{' && p.peek() != '~' {
			return errBad("Expected a literal after TEXT")
		}
		l, err := p.literalHead()
		if err != nil {
			return err
		}
		if r.size+l.n > max {
			return errNo(codeTooBig, "Message exceeds APPENDLIMIT") // RFC 4469 §5
		}
		if err := a.reserve(l); err != nil {
			return err
		}
		lr, err := a.stream(l, trailer)
		if err != nil {
			return err
		}
		r.size += l.n
		r.cur = lr
		return nil
	case p.acceptWord("URL"):
		if err := p.sp(); err != nil {
			return err
		}
		raw, err := p.astring()
		if err != nil {
			return err
		}
		rc, n, err := c.openURLPart(raw)
		if err != nil {
			return err
		}
		if r.size+n > max {
			rc.Close()
			return errNo(codeTooBig, "Message exceeds APPENDLIMIT") // RFC 4469 §5
		}
		a.announced += n // counted against the quota by the next check
		r.size += n
		r.cur, r.closer = &exactReader{r: rc, n: n}, func() { rc.Close() }
		return nil
	}
	return errBad("Expected TEXT or URL in CATENATE")
}

// imapURL is a parsed IMAP URL naming a message or a part of one
// (RFC 5092 §6 imessagepart).
type imapURL struct {
	user        string // absolute form: the iuserinfo's user, decoded
	host        string // absolute form: the host
	mailbox     string // enc-mailbox, decoded
	uidValidity uint32 // 0: not given
	uid         uint32
	section     string // enc-section, decoded; "" for the whole message
	partial     bool
	off, n      int64 // n < 0: to the end
}

var errURLSyntax = errors.New("invalid IMAP URL")

// parseIMAPURL parses an IMAP URL of a message or part (RFC 5092 §6):
// "imap://" [user [";AUTH=" ...] "@"] host [":" port] followed by, or
// alone as a URL relative to this server, "/" enc-mailbox
// [";UIDVALIDITY=" nz-number] "/;UID=" nz-number ["/;SECTION=" enc-section]
// ["/;PARTIAL=" number ["." nz-number]]. URLAUTH parameters (RFC 4467)
// are refused: URLAUTH is not offered.
func parseIMAPURL(s string) (imapURL, error) {
	var u imapURL
	if len(s) > maxURLLength {
		return u, errURLSyntax
	}
	if len(s) >= 7 && strings.EqualFold(s[:7], "imap://") {
		rest := s[7:]
		slash := strings.IndexByte(rest, '/')
		if slash < 0 {
			return u, errURLSyntax
		}
		auth := rest[:slash]
		if at := strings.LastIndexByte(auth, '@'); at >= 0 {
			user := auth[:at]
			if i := strings.IndexByte(user, ';'); i >= 0 {
				user = user[:i] // ";AUTH=..." (RFC 5092 §3.2)
			}
			var err error
			if u.user, err = pctDecode(user); err != nil || u.user == "" {
				return u, errURLSyntax
			}
			auth = auth[at+1:]
		}
		if i := strings.LastIndexByte(auth, ':'); i >= 0 {
			auth = auth[:i]
		}
		if auth == "" {
			return u, errURLSyntax
		}
		u.host = auth
		s = rest[slash:]
	}
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") {
		return u, errURLSyntax
	}
	rest := s[1:]
	semi := strings.IndexByte(rest, ';')
	if semi < 0 {
		return u, errURLSyntax
	}
	mbox, params := rest[:semi], rest[semi:]
	if v, ok := cutFold(params, ";UIDVALIDITY="); ok {
		i := strings.IndexByte(v, '/')
		if i < 0 {
			return u, errURLSyntax
		}
		n, err := nzNumber(v[:i])
		if err != nil {
			return u, err
		}
		u.uidValidity, params = n, v[i:]
		if !strings.HasPrefix(params, "/;") {
			return u, errURLSyntax
		}
		params = params[1:]
	} else if !strings.HasSuffix(mbox, "/") {
		return u, errURLSyntax
	} else {
		mbox = mbox[:len(mbox)-1]
	}
	var err error
	if u.mailbox, err = pctDecode(mbox); err != nil || u.mailbox == "" {
		return u, errURLSyntax
	}
	v, ok := cutFold(params, ";UID=")
	if !ok {
		return u, errURLSyntax
	}
	next := func(v string) (string, string) {
		if i := strings.Index(v, "/;"); i >= 0 {
			return v[:i], v[i+1:]
		}
		if i := strings.IndexByte(v, ';'); i >= 0 {
			return v[:i], v[i:]
		}
		return v, ""
	}
	num, params := next(v)
	if u.uid, err = nzNumber(num); err != nil {
		return u, err
	}
	if v, ok := cutFold(params, ";SECTION="); ok {
		var sec string
		sec, params = next(v)
		if u.section, err = pctDecode(sec); err != nil || u.section == "" {
			return u, errURLSyntax
		}
	}
	if v, ok := cutFold(params, ";PARTIAL="); ok {
		var pr string
		pr, params = next(v)
		off, cnt, dot := strings.Cut(pr, ".")
		o, err := strconv.ParseUint(off, 10, 63)
		if err != nil || off == "" || off[0] == '+' {
			return u, errURLSyntax
		}
		u.partial, u.off, u.n = true, int64(o), -1
		if dot {
			n, err := nzNumber(cnt)
			if err != nil {
				return u, err
			}
			u.n = int64(n)
		}
	}
	if params != "" {
		return u, errURLSyntax // ;EXPIRE=, ;URLAUTH= or anything else
	}
	return u, nil
}

// cutFold removes prefix (case-insensitively) from s.
func cutFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// nzNumber parses an RFC 9051 nz-number (32 bits).
func nzNumber(s string) (uint32, error) {
	if s == "" || s[0] == '0' || len(s) > 10 {
		return 0, errURLSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errURLSyntax
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, errURLSyntax
	}
	return uint32(n), nil
}

// pctDecode undoes percent-encoding (RFC 3986 §2.1); control characters
// and NUL are refused.
func pctDecode(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch == '%' {
			if i+2 >= len(s) {
				return "", errURLSyntax
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", errURLSyntax
			}
			ch = hi<<4 | lo
			i += 2
		}
		if ch < ' ' || ch == 0x7f {
			return "", errURLSyntax
		}
		b.WriteByte(ch)
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// badURL is NO [BADURL url] (RFC 4469 §6); the URL is shown without the
// characters resp-text-code cannot hold.
func badURL(raw, why string) error {
	clean := strings.Map(func(r rune) rune {
		if r == ']' || r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, raw)
	if len(clean) > 200 {
		clean = clean[:200]
	}
	return errNo("BADURL "+clean, why)
}

// openURLPart resolves a CATENATE URL against the session's own account
// and opens the octets it names: the reader and their number. Anything
// that does not name an existing message (or part) of one of the user's
// mailboxes is NO [BADURL] (RFC 4469 §5): another account (an absolute
// URL with another user, or a host that is not this server), a mailbox
// that the account does not have (a relative URL is resolved in the
// session's own namespace only), a UIDVALIDITY that does not match, a
// missing UID or section.
func (c *conn) openURLPart(raw string) (io.ReadCloser, int64, error) {
	u, err := parseIMAPURL(raw)
	if err != nil {
		return nil, 0, badURL(raw, "Invalid IMAP URL")
	}
	if u.host != "" && (!strings.EqualFold(u.user, c.acct.Address) || !strings.EqualFold(u.host, c.srv.cfg.Hostname)) {
		return nil, 0, badURL(raw, "URL of another user or server")
	}
	var it fetchItem
	if u.section != "" {
		// The section is parsed as FETCH's (RFC 5092 §6 enc-section is a
		// section-text), from memory only: no literal may be asked for.
		if strings.ContainsAny(u.section, "{\"\\[]") {
			return nil, 0, badURL(raw, "Invalid section")
		}
		sp := parser{c: c, line: []byte("[" + u.section + "]")}
		if err := sp.section(&it, false); err != nil || !sp.atEnd() {
			return nil, 0, badURL(raw, "Invalid section")
		}
	} else {
		it.whole = true
	}
	name, err := urlMailboxName(u.mailbox)
	if err != nil {
		return nil, 0, badURL(raw, "No such mailbox")
	}
	ctx, cancel := context.WithTimeout(c.ctx, urlReadTimeout)
	fail := func(err error) (io.ReadCloser, int64, error) {
		cancel()
		return nil, 0, err
	}
	mbox, err := c.srv.store.GetMailbox(ctx, c.acct.ID, name)
	if errors.Is(err, mailstore.ErrNoSuchMailbox) {
		return fail(badURL(raw, "No such mailbox"))
	} else if err != nil {
		return fail(err)
	}
	if u.uidValidity != 0 && u.uidValidity != mbox.UIDValidity {
		return fail(badURL(raw, "UIDVALIDITY does not match"))
	}
	ds, err := c.srv.store.FetchDetails(ctx, c.acct.ID, mbox.ID, mailstore.UIDs(u.uid))
	if err != nil {
		return fail(err)
	}
	if len(ds) != 1 || ds[0].UID != u.uid {
		return fail(badURL(raw, "No such message"))
	}
	d := ds[0]
	off, length := int64(0), d.Size
	filter := false
	if !it.whole {
		if d.Parsed == nil {
			return fail(badURL(raw, "No such section"))
		}
		off, length, filter, err = imapmsg.Resolve(d.Parsed, it.sec)
		if err != nil {
			return fail(badURL(raw, "No such section"))
		}
	}
	window := func(size int64) (int64, int64) {
		if !u.partial {
			return 0, size
		}
		if u.off >= size {
			return size, 0
		}
		if u.n < 0 {
			return u.off, size - u.off
		}
		return u.off, min(u.n, size-u.off)
	}
	if filter {
		rc, err := c.srv.store.OpenMessage(ctx, c.acct.ID, mbox.ID, u.uid, off, min(length, maxFilterHeader))
		if err != nil {
			return fail(badURL(raw, "No such message"))
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxFilterHeader))
		rc.Close()
		cancel()
		if err != nil {
			return nil, 0, err
		}
		data = imapmsg.FilterHeader(data, it.sec.Fields, it.sec.Specifier == "HEADER.FIELDS.NOT")
		o, n := window(int64(len(data)))
		return io.NopCloser(bytes.NewReader(data[o : o+n])), n, nil
	}
	o, n := window(length)
	if n == 0 {
		cancel()
		return io.NopCloser(bytes.NewReader(nil)), 0, nil
	}
	rc, err := c.srv.store.OpenMessage(ctx, c.acct.ID, mbox.ID, u.uid, off+o, n)
	if errors.Is(err, mailstore.ErrNoSuchMessage) {
		return fail(badURL(raw, "No such message"))
	} else if err != nil {
		return fail(err)
	}
	return &cancelCloser{rc, cancel}, n, nil
}

// cancelCloser closes a reader and then cancels its context.
type cancelCloser struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelCloser) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// urlMailboxName turns a decoded enc-mailbox into a mailbox name: RFC 5092
// §3.3 has it in UTF-8; a name in modified UTF-7 (RFC 2192's form, which
// clients still send) is decoded too.
func urlMailboxName(s string) (string, error) {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii && strings.IndexByte(s, '&') >= 0 {
		if d, err := decodeMUTF7(s); err == nil {
			s = d
		}
	}
	if !utf8.ValidString(s) || strings.HasPrefix(s, "#") || strings.HasPrefix(s, "~") {
		return "", errURLSyntax
	}
	return mailstore.NormalizeMailboxName(s)
}

// exactReader reads n octets of r and fails if r ends before them (a
// message expunged while it is read): a part cut short is never stored.
type exactReader struct {
	r io.Reader
	n int64
}

func (e *exactReader) Read(b []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > e.n {
		b = b[:e.n]
	}
	k, err := e.r.Read(b)
	e.n -= int64(k)
	if err == io.EOF && e.n > 0 {
		err = io.ErrUnexpectedEOF
	} else if err == io.EOF {
		err = nil
	}
	return k, err
}
