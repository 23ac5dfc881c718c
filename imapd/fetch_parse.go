package imapd

import (
	"strconv"
	"strings"

	"github.com/postrider/postrider/imapd/imapmsg"
)

// fetchKind is one FETCH data item (RFC 9051 §6.4.5).
type fetchKind uint8

const (
	fetchUID fetchKind = iota
	fetchFlags
	fetchInternalDate
	fetchSize
	fetchModSeq
	fetchEnvelope
	fetchBody          // BODY (non-extensible BODYSTRUCTURE)
	fetchBodyStructure // BODYSTRUCTURE
	fetchSection       // BODY[...], BODY.PEEK[...], RFC822, RFC822.HEADER, RFC822.TEXT
	fetchBinary        // BINARY[...], BINARY.PEEK[...] (RFC 3516)
	fetchBinarySize    // BINARY.SIZE[...]
	fetchEmailID       // EMAILID (RFC 8474 §5.1)
	fetchThreadID      // THREADID (RFC 8474 §5.2)
	fetchSaveDate      // SAVEDATE (RFC 8514 §4)
	fetchPreview       // PREVIEW (RFC 8970 §4)
	fetchKinds         // the number of kinds
)

// maxFetchItems bounds the data items of one FETCH; maxHeaderFields the
// field names of one HEADER.FIELDS list.
const (
	maxFetchItems   = 64
	maxHeaderFields = 128
)

// fetchItem is one requested data item.
type fetchItem struct {
	kind    fetchKind
	name    string // response item name, e.g. "BODY[1.HEADER.FIELDS (From)]" or "RFC822.TEXT"
	sec     imapmsg.Section
	whole   bool  // the section is the whole message (BODY[], RFC822)
	peek    bool  // does not set \Seen
	partial bool  // <origin.count> given
	origin  int64 // partial origin
	count   int64 // partial octet count
}

// fetchReq is a parsed FETCH command.
type fetchReq struct {
	items        []fetchItem
	details      bool // needs the parsed message (envelope, structure, sections)
	content      bool // needs the content (details, or a whole message, which a small one has in memory)
	setSeen      bool // some item implicitly sets \Seen (RFC 9051 §6.4.5)
	changedSince uint64
	hasChanged   bool       // CHANGEDSINCE given (RFC 7162 §3.1.4.1)
	vanished     bool       // VANISHED given (RFC 7162 §3.2.6)
	page         *pageRange // PARTIAL given (RFC 9394 §3.3)
	has          [fetchKinds]bool
	lazyPreview  bool // PREVIEW (LAZY) (RFC 8970 §4.1)
}

func (r *fetchReq) add(it fetchItem) error {
	if len(r.items) >= maxFetchItems {
		return errBad("Too many FETCH items")
	}
	r.has[it.kind] = true
	switch it.kind {
	case fetchEnvelope, fetchBody, fetchBodyStructure, fetchBinary, fetchBinarySize:
		r.details = true
	case fetchSection:
		if !it.whole {
			r.details = true
		}
	}
	r.content = r.content || r.details || it.kind == fetchSection || it.kind == fetchPreview
	if (it.kind == fetchSection || it.kind == fetchBinary) && !it.peek {
		r.setSeen = true
	}
	r.items = append(r.items, it)
	return nil
}

// fetchAttName scans a data item name, stopping before "[" or "<".
func (p *parser) fetchAttName() string {
	return strings.ToUpper(p.scan(func(c byte) bool { return isAtomChar(c) && c != '[' && c != '<' }))
}

// fetchAtts parses the item list or macro of a FETCH command.
func (p *parser) fetchAtts(r *fetchReq) error {
	if p.peek() == '(' {
		err := p.list(func() error { return p.fetchAtt(r) })
		if err == nil && len(r.items) == 0 {
			err = errBad("Empty FETCH item list")
		}
		return err
	}
	save := p.pos
	switch p.fetchAttName() {
	case "ALL":
		return r.macro(fetchFlags, fetchInternalDate, fetchSize, fetchEnvelope)
	case "FAST":
		return r.macro(fetchFlags, fetchInternalDate, fetchSize)
	case "FULL":
		return r.macro(fetchFlags, fetchInternalDate, fetchSize, fetchEnvelope, fetchBody)
	}
	p.pos = save
	return p.fetchAtt(r)
}

var simpleItemNames = map[fetchKind]string{
	fetchUID: "UID", fetchFlags: "FLAGS", fetchInternalDate: "INTERNALDATE", fetchSize: "RFC822.SIZE",
	fetchModSeq: "MODSEQ", fetchEnvelope: "ENVELOPE", fetchBody: "BODY", fetchBodyStructure: "BODYSTRUCTURE",
}

func (r *fetchReq) macro(kinds ...fetchKind) error {
	for _, k := range kinds {
		if err := r.add(fetchItem{kind: k, name: simpleItemNames[k]}); err != nil {
			return err
		}
	}
	return nil
}

// fetchAtt parses one fetch-att (RFC 9051 §9, RFC 3516 §6, RFC 7162 §7).
func (p *parser) fetchAtt(r *fetchReq) error {
	name := p.fetchAttName()
	switch name {
	case "UID":
		return r.add(fetchItem{kind: fetchUID, name: name})
	case "FLAGS":
		return r.add(fetchItem{kind: fetchFlags, name: name})
	case "INTERNALDATE":
		return r.add(fetchItem{kind: fetchInternalDate, name: name})
	case "RFC822.SIZE":
		return r.add(fetchItem{kind: fetchSize, name: name})
	case "MODSEQ":
		return r.add(fetchItem{kind: fetchModSeq, name: name})
	case "ENVELOPE":
		return r.add(fetchItem{kind: fetchEnvelope, name: name})
	case "BODYSTRUCTURE":
		return r.add(fetchItem{kind: fetchBodyStructure, name: name})
	case "RFC822":
		return r.add(fetchItem{kind: fetchSection, name: name, whole: true})
	case "RFC822.HEADER":
		return r.add(fetchItem{kind: fetchSection, name: name, peek: true, sec: imapmsg.Section{Specifier: "HEADER"}})
	case "RFC822.TEXT":
		return r.add(fetchItem{kind: fetchSection, name: name, sec: imapmsg.Section{Specifier: "TEXT"}})
	case "BODY", "BODY.PEEK":
		if p.peek() != '[' {
			if name == "BODY.PEEK" {
				return errBad("BODY.PEEK needs a section")
			}
			return r.add(fetchItem{kind: fetchBody, name: name})
		}
		it := fetchItem{kind: fetchSection, peek: name == "BODY.PEEK"}
		if err := p.section(&it, false); err != nil {
			return err
		}
		if err := p.partial(&it); err != nil {
			return err
		}
		it.name = "BODY" + it.name
		return r.add(it)
	case "BINARY", "BINARY.PEEK", "BINARY.SIZE":
		it := fetchItem{kind: fetchBinary, peek: name == "BINARY.PEEK"}
		if name == "BINARY.SIZE" {
			it.kind = fetchBinarySize
		}
		if err := p.section(&it, true); err != nil {
			return err
		}
		if it.kind == fetchBinary {
			if err := p.partial(&it); err != nil {
				return err
			}
		}
		it.name = strings.TrimSuffix(name, ".PEEK") + it.name
		return r.add(it)
	case "EMAILID", "THREADID", "SAVEDATE", "PREVIEW":
		return p.objectAtt(r, name)
	}
	return errBad("Unknown FETCH item")
}

// section parses "[" section-spec "]" (or section-binary, RFC 3516) and sets
// it.sec, it.whole and the "[...]" part of it.name.
func (p *parser) section(it *fetchItem, binary bool) error {
	if err := p.expect('['); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteByte('[')
	for p.peek() >= '1' && p.peek() <= '9' {
		n, err := p.nzNumber()
		if err != nil {
			return err
		}
		if len(it.sec.Part) >= 32 {
			return errBad("Section part too deep")
		}
		it.sec.Part = append(it.sec.Part, int(n))
		if len(it.sec.Part) > 1 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(uint64(n), 10))
		if !p.accept('.') {
			break
		}
		if p.peek() < '1' || p.peek() > '9' {
			b.WriteByte('.')
			break
		}
	}
	if binary {
		if strings.HasSuffix(b.String(), ".") {
			return errBad("Invalid BINARY section")
		}
		if err := p.expect(']'); err != nil {
			return errBad("Invalid BINARY section")
		}
		it.whole = len(it.sec.Part) == 0
		b.WriteByte(']')
		it.name = b.String()
		return nil
	}
	if p.peek() != ']' {
		if len(it.sec.Part) > 0 && !strings.HasSuffix(b.String(), ".") {
			return errBad("Invalid section")
		}
		spec := strings.ToUpper(p.scan(func(c byte) bool { return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '.' }))
		switch spec {
		case "HEADER", "TEXT":
		case "MIME":
			if len(it.sec.Part) == 0 {
				return errBad("MIME needs a part number")
			}
		case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
			if err := p.sp(); err != nil {
				return err
			}
			b.WriteString(spec)
			b.WriteString(" (")
			err := p.list(func() error {
				f, err := p.astring()
				if err != nil {
					return err
				}
				if len(it.sec.Fields) >= maxHeaderFields {
					return errBad("Too many header fields")
				}
				if !validFieldName(f) {
					return errBad("Invalid header field name")
				}
				if len(it.sec.Fields) > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(astringText(f))
				it.sec.Fields = append(it.sec.Fields, f)
				return nil
			})
			if err != nil {
				return err
			}
			if len(it.sec.Fields) == 0 {
				return errBad("Empty header field list")
			}
			b.WriteByte(')')
			it.sec.Specifier = spec
			spec = ""
		default:
			return errBad("Invalid section")
		}
		if spec != "" {
			b.WriteString(spec)
			it.sec.Specifier = spec
		}
	} else if strings.HasSuffix(b.String(), ".") {
		return errBad("Invalid section")
	}
	if err := p.expect(']'); err != nil {
		return errBad("Invalid section")
	}
	b.WriteByte(']')
	it.name = b.String()
	it.whole = len(it.sec.Part) == 0 && it.sec.Specifier == ""
	return nil
}

// validFieldName: 1*<any CHAR except CTL, SP and ":"> (RFC 5322 §3.6.8).
func validFieldName(f string) bool {
	if f == "" || len(f) > 128 {
		return false
	}
	for i := 0; i < len(f); i++ {
		if f[i] <= ' ' || f[i] >= 0x7f || f[i] == ':' {
			return false
		}
	}
	return true
}

// partial parses an optional "<" number "." nz-number ">" (RFC 9051 §9).
func (p *parser) partial(it *fetchItem) error {
	if !p.accept('<') {
		return nil
	}
	o, err := p.number64()
	if err != nil {
		return err
	}
	if err := p.expect('.'); err != nil {
		return err
	}
	n, err := p.number64()
	if err != nil || n == 0 {
		return errBad("Invalid partial range")
	}
	if err := p.expect('>'); err != nil {
		return err
	}
	it.partial, it.origin, it.count = true, int64(o), int64(n)
	return nil
}

// fetchModifiers parses " (" fetch-modifier *(SP fetch-modifier) ")"
// (RFC 7162 §3.1.4.1, §3.2.6; RFC 9394 §3.3 PARTIAL).
func (p *parser) fetchModifiers(r *fetchReq) error {
	return p.list(func() error {
		switch {
		case p.acceptWord("CHANGEDSINCE"):
			if err := p.sp(); err != nil {
				return err
			}
			v, err := p.number64()
			r.changedSince, r.hasChanged = v, true
			return err
		case p.acceptWord("VANISHED"):
			r.vanished = true
			return nil
		case p.acceptWord("PARTIAL"):
			if r.page != nil {
				return errBad("PARTIAL given twice")
			}
			if err := p.sp(); err != nil {
				return err
			}
			pr, err := p.pageRange()
			r.page = &pr
			return err
		}
		return errBad("Unknown FETCH modifier")
	})
}

// astringText renders a header field name for the echoed section name: as
// an atom when it is one, else quoted (field names hold no CR, LF or NUL).
func astringText(s string) string {
	if isAtom(s) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}
