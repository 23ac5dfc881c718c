package imapd

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/postrider/postrider/mailstore"
)

// METADATA and METADATA-SERVER (RFC 5464): entries of mailboxes and of
// the server, kept by the store per account (mailstore.Metadata). With no
// shared mailboxes and no ACL, "/shared" entries are the account's own as
// "/private" ones are, and server entries are per account: what one
// account sets, no other account reads. No unsolicited METADATA
// responses are sent (§4.1 makes them optional).

// maxMetadataArgs bounds the entry names of one GETMETADATA (a
// SETMETADATA is bounded by mailstore.MaxMetadataObject).
const maxMetadataArgs = 64

// getMetadataReq is a parsed GETMETADATA command (RFC 5464 §5).
type getMetadataReq struct {
	maxSize int64 // -1: no MAXSIZE
	depth   int   // 0, 1 or mailstore.MetadataDepthInfinity
	mailbox string
	names   []string // normalised, without duplicates
}

// setMetadataReq is a parsed SETMETADATA command (RFC 5464 §5).
type setMetadataReq struct {
	mailbox string
	entries []mailstore.MetadataEntry // normalised names, the last value of a repeated one
}

// getMetadataArgs parses [SP "(" option *(SP option) ")"] SP mailbox SP
// entries.
func (c *conn) getMetadataArgs() (getMetadataReq, error) {
	r := getMetadataReq{maxSize: -1}
	p := &c.p
	if err := p.sp(); err != nil {
		return r, err
	}
	if p.peek() == '(' {
		seen := map[string]bool{}
		err := p.list(func() error {
			opt, err := p.atom()
			if err != nil {
				return err
			}
			opt = strings.ToUpper(opt)
			if seen[opt] {
				return errBad("GETMETADATA option given twice")
			}
			seen[opt] = true
			if err := p.sp(); err != nil {
				return err
			}
			switch opt {
			case "MAXSIZE": // §4.2.1
				n, err := p.number()
				if err != nil {
					return err
				}
				r.maxSize = int64(n)
			case "DEPTH": // §4.2.2
				d, err := p.atom()
				if err != nil {
					return err
				}
				switch strings.ToLower(d) {
				case "0":
					r.depth = 0
				case "1":
					r.depth = 1
				case "infinity":
					r.depth = mailstore.MetadataDepthInfinity
				default:
					return errBad("DEPTH must be 0, 1 or infinity")
				}
			default:
				return errBad("Unknown GETMETADATA option")
			}
			return nil
		})
		if err != nil {
			return r, err
		}
		if err := p.sp(); err != nil {
			return r, err
		}
	}
	mbox, err := c.metadataMailbox()
	if err != nil {
		return r, err
	}
	r.mailbox = mbox
	if err := p.sp(); err != nil {
		return r, err
	}
	add := func() error {
		e, err := p.astring()
		if err != nil {
			return err
		}
		n, ok := mailstore.NormalizeMetadataLookup(e)
		if !ok {
			return errBad("Invalid entry name") // §3.2
		}
		if len(r.names) >= maxMetadataArgs {
			return errBad("Too many entry names")
		}
		if !slices.Contains(r.names, n) {
			r.names = append(r.names, n)
		}
		return nil
	}
	if p.peek() == '(' {
		err = p.list(add)
	} else {
		err = add()
	}
	if err == nil && len(r.names) == 0 {
		err = errBad("Empty entry list")
	}
	if err != nil {
		return r, err
	}
	return r, p.end()
}

// metadataMailbox reads the mailbox argument: "" for the server, else a
// mailbox name (decoded; not checked for existence here).
func (c *conn) metadataMailbox() (string, error) {
	raw, err := c.p.astring()
	if err != nil || raw == "" {
		return "", err
	}
	return c.decodeName(raw, false)
}

// setMetadataArgs parses SP mailbox SP "(" entry SP value *(SP entry SP
// value) ")", value = nstring / literal8.
func (c *conn) setMetadataArgs() (setMetadataReq, error) {
	var r setMetadataReq
	p := &c.p
	if err := p.sp(); err != nil {
		return r, err
	}
	mbox, err := c.metadataMailbox()
	if err != nil {
		return r, err
	}
	r.mailbox = mbox
	if err := p.sp(); err != nil {
		return r, err
	}
	if p.peek() != '(' {
		return r, errBad("Expected a list of entries and values")
	}
	err = p.list(func() error {
		e, err := p.astring()
		if err != nil {
			return err
		}
		name, ok := mailstore.NormalizeMetadataName(e)
		if !ok {
			return errBad("Invalid entry name") // §3.2
		}
		if err := p.sp(); err != nil {
			return err
		}
		v, err := c.metadataValue()
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(r.entries, func(x mailstore.MetadataEntry) bool { return x.Name == name }); i >= 0 {
			r.entries[i].Value = v
			return nil
		}
		if len(r.entries) >= mailstore.MaxMetadataObject {
			return errNo("METADATA TOOMANY", "Too many entries") // §4.3
		}
		r.entries = append(r.entries, mailstore.MetadataEntry{Name: name, Value: v})
		return nil
	})
	if err == nil && len(r.entries) == 0 {
		err = errBad("Empty entry list")
	}
	if err != nil {
		return r, err
	}
	return r, p.end()
}

// metadataValue reads NIL (nil), a quoted string or a literal, or a
// literal8 (which may hold NUL). A value longer than the store takes is
// refused with [METADATA MAXSIZE] before its literal is asked for (§4.3).
func (c *conn) metadataValue() ([]byte, error) {
	p := &c.p
	tooBig := errNo("METADATA MAXSIZE "+strconv.Itoa(mailstore.MaxMetadataValue), "Value too large")
	switch p.peek() {
	case '{', '~':
		l, err := p.literalHead()
		if err != nil {
			return nil, err
		}
		if l.n > mailstore.MaxMetadataValue {
			p.nlit++
			return nil, tooBig
		}
		b, err := p.literalBytes(l)
		if err != nil {
			return nil, err
		}
		if !l.binary && bytes.IndexByte(b, 0) >= 0 {
			return nil, errBad("NUL in literal")
		}
		return b, nil
	case '"':
		s, err := p.quoted()
		if err != nil {
			return nil, err
		}
		if len(s) > mailstore.MaxMetadataValue {
			return nil, tooBig
		}
		return []byte(s), nil
	}
	if p.acceptNIL() {
		return nil, nil
	}
	return nil, errBad("Expected a value")
}

// GETMETADATA (RFC 5464 §4.2): one METADATA response with the entries
// found (a requested entry without a value as NIL, so the response is
// never empty), values above MAXSIZE left out and the largest of them
// reported as [METADATA LONGENTRIES n].
func cmdGetMetadata(c *conn, cx *cmdCtx) error {
	r, err := c.getMetadataArgs()
	if err != nil {
		return err
	}
	es, err := c.srv.store.GetMetadata(c.ctx, c.acct.ID, r.mailbox, r.names, r.depth)
	if err != nil {
		return err
	}
	longest := c.writeMetadata(r.mailbox, r.names, es, r.maxSize)
	if longest > 0 {
		cx.okCode = "METADATA LONGENTRIES " + strconv.FormatInt(longest, 10)
	}
	return nil
}

// writeMetadata writes "* METADATA mailbox (entry value ...)": the
// entries found and, as NIL, each requested entry name without a value,
// in name order, leaving out values above maxSize (-1: none) and
// returning the size of the largest of those (RFC 5464 §4.2.1).
func (c *conn) writeMetadata(mailbox string, names []string, es []mailstore.MetadataEntry, maxSize int64) int64 {
	found := make(map[string]bool, len(es))
	for _, e := range es {
		found[e.Name] = true
	}
	for _, n := range names {
		if _, entry := mailstore.NormalizeMetadataName(n); entry && !found[n] {
			es = append(es, mailstore.MetadataEntry{Name: n})
		}
	}
	slices.SortFunc(es, func(a, b mailstore.MetadataEntry) int { return strings.Compare(a.Name, b.Name) })
	var longest int64
	w := &c.w
	w.str("* METADATA ")
	c.writeName(mailbox)
	w.str(" (")
	first := true
	for _, e := range es {
		if maxSize >= 0 && int64(len(e.Value)) > maxSize {
			longest = max(longest, int64(len(e.Value)))
			continue
		}
		if !first {
			w.sp()
		}
		first = false
		w.astring(e.Name)
		w.sp()
		writeMetadataValue(w, e.Value)
	}
	w.str(")\r\n")
	return longest
}

// listMetadataOpt parses the LIST return option METADATA's argument:
// SP "(" entry *(SP entry) ")" (RFC 9590 §3).
func (c *conn) listMetadataOpt() ([]string, error) {
	p := &c.p
	if err := p.sp(); err != nil {
		return nil, err
	}
	var names []string
	err := p.list(func() error {
		e, err := p.astring()
		if err != nil {
			return err
		}
		n, ok := mailstore.NormalizeMetadataName(e)
		if !ok {
			return errBad("Invalid entry name") // RFC 5464 §3.2
		}
		if len(names) >= maxMetadataArgs {
			return errBad("Too many entry names")
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
		return nil
	})
	if err == nil && len(names) == 0 {
		err = errBad("Empty entry list")
	}
	return names, err
}

// listMetadata writes the METADATA response of one listed mailbox (RFC
// 9590 §3): every requested entry, NIL when it has no value. A mailbox
// deleted since the listing is left out.
func (c *conn) listMetadata(mailbox string, names []string) error {
	es, err := c.srv.store.GetMetadata(c.ctx, c.acct.ID, mailbox, names, 0)
	if errors.Is(err, mailstore.ErrNoSuchMailbox) {
		return nil
	}
	if err != nil {
		return err
	}
	c.writeMetadata(mailbox, names, es, -1)
	return nil
}

// writeMetadataValue writes a value as NIL, a string, or a literal8 when
// it holds NUL (RFC 5464 §5: value = nstring / literal8).
func writeMetadataValue(w *respWriter, v []byte) {
	switch {
	case v == nil:
		w.str("NIL")
	case bytes.IndexByte(v, 0) >= 0:
		w.literalHeader(int64(len(v)), true)
		w.raw(v)
	default:
		w.string(string(v))
	}
}

// SETMETADATA (RFC 5464 §4.3): all entries or none.
func cmdSetMetadata(c *conn, cx *cmdCtx) error {
	r, err := c.setMetadataArgs()
	if err != nil {
		return err
	}
	if r.mailbox == "" && slices.ContainsFunc(r.entries, func(e mailstore.MetadataEntry) bool { return e.Name == "/shared/admin" }) {
		return errNo("", "/shared/admin is read-only") // §3.2.1.1
	}
	err = c.srv.store.SetMetadata(c.ctx, c.acct.ID, r.mailbox, r.entries)
	if errors.Is(err, mailstore.ErrMetadataTooMany) {
		return errNo("METADATA TOOMANY", "Too many entries") // §4.3
	}
	return err
}
