package imapd

import (
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/msgparse"
)

// Object identifiers (RFC 8474). Every id is a letter naming its kind and
// the decimal id of the store row, so every node derives the same id from
// the database and no id is ever stored:
//   - MAILBOXID: the mailbox row. RENAME keeps it (the row is renamed);
//     RENAME INBOX moves INBOX's messages to a new mailbox, which gets a
//     new id while INBOX keeps its own (RFC 8474 §4.2.1); a mailbox
//     deleted and created again gets a new one.
//   - EMAILID: the message's content. A content is shared by the
//     recipients of one delivery and by the copies COPY and MOVE make, so
//     a message keeps its EMAILID when copied or moved, on every node
//     (§5.1); two separate deliveries of one message get two contents (a
//     streamed one above the store's chunk size may be shared, and is the
//     same octets: §5.1 lets a server give identical messages one id).
//   - THREADID: not computed; FETCH THREADID answers NIL, which §5.2
//     allows, and SEARCH THREADID matches nothing.
const (
	mailboxIDPrefix = 'F'
	emailIDPrefix   = 'M'
	maxObjectID     = 255 // RFC 8474 §7: objectid = 1*255(ALPHA / DIGIT / "_" / "-")
)

func mailboxID(id int64) string { return string(mailboxIDPrefix) + strconv.FormatInt(id, 10) }
func emailID(id int64) string   { return string(emailIDPrefix) + strconv.FormatInt(id, 10) }

// parseObjectID returns the row id an object id of the kind names, or
// false when it is not one this server made.
func parseObjectID(s string, prefix byte) (int64, bool) {
	if len(s) < 2 || len(s) > 20 || s[0] != prefix || s[1] == '0' {
		return 0, false
	}
	n, err := strconv.ParseInt(s[1:], 10, 64)
	return n, err == nil && n > 0
}

// validObjectID: RFC 8474 §7 objectid.
func validObjectID(s string) bool {
	if len(s) == 0 || len(s) > maxObjectID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// objectAtt parses the FETCH items EMAILID, THREADID (RFC 8474 §7),
// SAVEDATE (RFC 8514 §7) and PREVIEW [SP "(" "LAZY" ")"] (RFC 8970 §7).
func (p *parser) objectAtt(r *fetchReq, name string) error {
	switch name {
	case "EMAILID":
		return r.add(fetchItem{kind: fetchEmailID, name: name})
	case "THREADID":
		return r.add(fetchItem{kind: fetchThreadID, name: name})
	case "SAVEDATE":
		return r.add(fetchItem{kind: fetchSaveDate, name: name})
	}
	// Only a list that starts with LAZY is PREVIEW's: "FETCH 1 PREVIEW
	// (CHANGEDSINCE 5)" has FETCH modifiers after a lone item.
	if rest := p.line[p.pos:]; len(rest) > 6 && rest[0] == ' ' && rest[1] == '(' &&
		strings.EqualFold(string(rest[2:6]), "LAZY") && (rest[6] == ' ' || rest[6] == ')') {
		p.pos++
		if err := p.list(func() error {
			m, err := p.atom()
			if err != nil || !strings.EqualFold(m, "LAZY") {
				return errBad("Unknown PREVIEW modifier")
			}
			r.lazyPreview = true
			return nil
		}); err != nil {
			return err
		}
	}
	if r.has[fetchPreview] {
		return nil // one PREVIEW response item, whatever was asked
	}
	return r.add(fetchItem{kind: fetchPreview, name: name})
}

// maxPreviewRead bounds what is read of a stored message to compute the
// preview of a content parsed before previews were stored.
const maxPreviewRead = 64 << 10

// loadObjectItems reads what EMAILID, SAVEDATE and PREVIEW need beyond
// loadFetch: the content ids the view does not know (one MessageContents
// call, usually none: the view learns them from the store's listings; a
// message expunged meanwhile whose content is not at hand is left out,
// as loadFetch does), the save dates of the chunk in one query, and the
// previews of contents
// stored before previews were (each from the first maxPreviewRead octets
// of its message; not with PREVIEW (LAZY), which then answers NIL as RFC
// 8970 §4.1 allows).
func (c *conn) loadObjectItems(r *fetchReq, msgs *[]fetchMsg) error {
	if r.has[fetchEmailID] {
		if err := c.loadContentIDs(msgs); err != nil {
			return err
		}
	}
	return c.loadDatesPreviews(r, *msgs)
}

// loadContentIDs fills in the content ids the view lacks.
func (c *conn) loadContentIDs(msgs *[]fetchMsg) error {
	var refs []mailstore.ContentRef
	for _, m := range *msgs {
		if m.meta.ContentID == 0 && m.content.ContentID == 0 {
			refs = append(refs, mailstore.ContentRef{UID: m.meta.UID})
		}
	}
	if len(refs) == 0 {
		return nil
	}
	cs, err := c.srv.store.MessageContents(c.ctx, c.acct.ID, c.sel.mbox.ID, refs)
	if err != nil {
		return err
	}
	ids := make(map[uint32]int64, len(refs))
	for k := range refs {
		ids[refs[k].UID] = cs[k].ContentID
	}
	out := (*msgs)[:0]
	for _, m := range *msgs {
		if m.meta.ContentID == 0 && m.content.ContentID == 0 {
			if m.meta.ContentID = ids[m.meta.UID]; m.meta.ContentID == 0 {
				continue
			}
			if i, ok := c.sel.index(m.meta.UID); ok {
				c.sel.msgs[i].content = m.meta.ContentID // learnt now (mailstore.ContentRef)
			}
		}
		out = append(out, m)
	}
	*msgs = out
	return nil
}

func (c *conn) loadDatesPreviews(r *fetchReq, msgs []fetchMsg) error {
	if len(msgs) == 0 {
		return nil
	}
	if r.has[fetchSaveDate] {
		uids := make([]uint32, len(msgs))
		for i := range msgs {
			uids[i] = msgs[i].meta.UID
		}
		ds, err := c.srv.store.SaveDates(c.ctx, c.acct.ID, c.sel.mbox.ID, mailstore.UIDs(uids...))
		if err != nil {
			return err
		}
		j := 0
		for i := range msgs {
			for j < len(ds) && ds[j].UID < msgs[i].meta.UID {
				j++
			}
			if j < len(ds) && ds[j].UID == msgs[i].meta.UID {
				msgs[i].saveDate = ds[j].At
			}
		}
	}
	if !r.has[fetchPreview] {
		return nil
	}
	for i := range msgs {
		m := &msgs[i]
		if m.parsed == nil {
			continue
		}
		if m.parsed.Preview != nil {
			m.preview = m.parsed.Preview
			continue
		}
		if r.lazyPreview {
			continue
		}
		pv, err := c.computePreview(m)
		if err != nil {
			return err
		}
		m.preview = pv
	}
	return nil
}

// computePreview parses the first octets of a message for its preview.
func (c *conn) computePreview(m *fetchMsg) (*string, error) {
	data := m.content.Data
	if int64(len(data)) < m.content.Size && len(data) < maxPreviewRead {
		rc, err := c.srv.store.OpenMessage(c.ctx, c.acct.ID, c.sel.mbox.ID, m.meta.UID, 0, maxPreviewRead)
		if errors.Is(err, mailstore.ErrNoSuchMessage) {
			return nil, nil // expunged meanwhile: NIL
		}
		if err != nil {
			return nil, err
		}
		data, err = io.ReadAll(io.LimitReader(rc, maxPreviewRead))
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	pv := msgparse.Preview(data[:min(len(data), maxPreviewRead)])
	return &pv, nil
}

// writeObjectItem writes one EMAILID, THREADID, SAVEDATE or PREVIEW item.
func (c *conn) writeObjectItem(m *fetchMsg, kind fetchKind) {
	w := &c.w
	switch kind {
	case fetchEmailID:
		id := m.meta.ContentID
		if id == 0 {
			id = m.content.ContentID
		}
		w.str("EMAILID (")
		w.str(emailID(id))
		w.byte(')')
	case fetchThreadID:
		w.str("THREADID NIL") // RFC 8474 §5.2: threads are not computed
	case fetchSaveDate:
		w.str("SAVEDATE ")
		if m.saveDate.IsZero() {
			w.str("NIL")
		} else {
			w.str(formatDateTime(m.saveDate))
		}
	case fetchPreview:
		w.str("PREVIEW ")
		if m.preview == nil {
			w.str("NIL")
		} else {
			w.string(*m.preview)
		}
	}
}

// objectSearchKey parses the search keys of RFC 8474 §6 (EMAILID,
// THREADID) and RFC 8514 §5 (SAVEDBEFORE, SAVEDON, SAVEDSINCE,
// SAVEDATESUPPORTED); ok is false for any other name.
func (sp *searchParser) objectSearchKey(dst *mailstore.SearchCriteria, name string) (ok bool, err error) {
	p := &sp.c.p
	switch name {
	case "EMAILID", "THREADID":
		if err := p.sp(); err != nil {
			return true, err
		}
		id, err := p.atom()
		if err != nil || !validObjectID(id) {
			return true, errBad("Invalid object id")
		}
		cid, mine := parseObjectID(id, emailIDPrefix)
		if name == "THREADID" || !mine {
			none(dst) // no thread ids; an id this server never gave
			return true, nil
		}
		dst.ContentIDs = append(dst.ContentIDs, cid)
		return true, nil
	case "SAVEDATESUPPORTED":
		return true, nil // every mailbox keeps save dates (RFC 8514 §5)
	case "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE":
		if err := p.sp(); err != nil {
			return true, err
		}
		d, err := p.date()
		if err != nil {
			return true, err
		}
		var sub mailstore.SearchCriteria
		switch name {
		case "SAVEDBEFORE":
			sub.SavedBefore = d
		case "SAVEDON":
			sub.SavedOn = d
		default:
			sub.SavedSince = d
		}
		and(dst, sub)
		return true, nil
	}
	return false, nil
}
