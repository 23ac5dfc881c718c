package imapd

import (
	"bytes"
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/postrider/postrider/imapd/imapmsg"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/msgparse"
)

// fatalError is a failure in the middle of a response: the response cannot
// be completed, so the connection is dropped (after logging err).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return "fatal: " + e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// fetchMsg is one message being fetched.
type fetchMsg struct {
	meta         mailstore.MessageMeta
	parsed       *msgparse.Message
	content      mailstore.MessageContent // when the items need it
	flagsChanged bool
	saveDate     time.Time // SAVEDATE; zero: not known (NIL)
	preview      *string   // PREVIEW; nil: NIL
}

// FETCH and UID FETCH (RFC 9051 §6.4.5, §6.4.9) with CHANGEDSINCE and
// VANISHED (RFC 7162 §3.1.4.1, §3.2.6) and BINARY (RFC 3516). Flags,
// dates, sizes and mod-sequences come from the view; envelope, structure
// and small messages from the store's content cache (one query for the
// contents it lacks); large bodies are streamed from the store.
func cmdFetch(c *conn, cx *cmdCtx) error {
	s := c.sel
	p := &c.p
	if err := p.sp(); err != nil {
		return err
	}
	set, err := p.sequenceSet()
	if err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	var r fetchReq
	if err := p.fetchAtts(&r); err != nil {
		return err
	}
	if p.accept(' ') {
		if err := p.fetchModifiers(&r); err != nil {
			return err
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	if r.vanished && (!cx.uid || !c.qresync || !r.hasChanged) {
		return errBad("VANISHED needs UID FETCH, QRESYNC and CHANGEDSINCE") // RFC 7162 §3.2.6
	}
	if r.page != nil && !cx.uid {
		return errBad("PARTIAL needs UID FETCH") // RFC 9394 §3.3
	}
	if r.has[fetchModSeq] || r.hasChanged {
		c.enableCondstore()
	}
	if err := c.refreshView(); err != nil {
		return err
	}
	uids, err := c.resolve(set, cx.uid)
	if err != nil {
		return err
	}
	if r.vanished {
		if err := c.fetchVanished(set, r.changedSince); err != nil {
			return err
		}
	}
	// The view's messages in the set, but not those expunged meanwhile:
	// they are announced later (RFC 9051 §7.5.1), and not fetched.
	var targets []int
	for _, i := range s.indexesIn(uids) {
		if _, gone := s.pending[s.msgs[i].uid]; gone {
			continue
		}
		if r.hasChanged && s.msgs[i].modseq <= r.changedSince {
			continue // RFC 7162 §3.1.4.1
		}
		targets = append(targets, i)
	}
	if r.page != nil {
		// RFC 9394 §3.3: only the messages at those positions of what
		// would be returned (after CHANGEDSINCE), in UID order.
		targets = pageOf(*r.page, targets)
	}
	batch := c.srv.limits.FetchBatch
	if !r.content {
		batch *= 16 // from memory
	}
	var buf bytes.Buffer
	for len(targets) > 0 {
		n := min(batch, len(targets))
		chunk := targets[:n]
		targets = targets[n:]
		msgs, err := c.loadFetch(&r, chunk)
		if err != nil {
			return err
		}
		if err := c.loadObjectItems(&r, &msgs); err != nil {
			return err
		}
		if r.setSeen && !s.readOnly {
			if err := c.markSeen(msgs); err != nil {
				return err
			}
		}
		for i := range msgs {
			if err := c.checkBinary(&r, &msgs[i]); err != nil {
				return err
			}
			if err := c.writeFetch(&r, &msgs[i], cx.uid, &buf); err != nil {
				return &fatalError{err}
			}
		}
		if c.w.err != nil {
			return errClosed
		}
	}
	return nil
}

// fetchVanished sends VANISHED (EARLIER) for the UIDs of the set expunged
// after changedSince (RFC 7162 §3.2.6).
func (c *conn) fetchVanished(set numSet, changedSince uint64) error {
	ch, err := c.srv.store.Changes(c.ctx, c.acct.ID, c.sel.mbox.ID, changedSince)
	if err != nil {
		return err
	}
	var gone string
	if ch.VanishedIncomplete {
		// Tombstones pruned: every UID of the set that does not exist
		// (RFC 7162 §4.1).
		live, err := c.liveUIDs()
		if err != nil {
			return err
		}
		gone = absentUIDs(set, ch.UIDNext-1, live)
	} else {
		var uids []uint32
		for _, u := range ch.Vanished {
			if setContains(set, u, ^uint32(0)) {
				uids = append(uids, u)
			}
		}
		gone = formatUIDs(sortedCompact(uids))
	}
	if gone != "" {
		c.w.str("* VANISHED (EARLIER) ")
		c.w.str(gone)
		c.w.crlf()
	}
	return nil
}

// loadFetch gathers what the items need of messages of the view (indexes
// into it): their metadata, and their contents when the items need them,
// from the store's cache or in one query.
func (c *conn) loadFetch(r *fetchReq, chunk []int) ([]fetchMsg, error) {
	s := c.sel
	msgs := make([]fetchMsg, len(chunk))
	for k, i := range chunk {
		msgs[k].meta = s.meta(i)
	}
	if !r.content {
		return msgs, nil
	}
	refs := make([]mailstore.ContentRef, len(chunk))
	for k := range msgs {
		refs[k] = mailstore.ContentRef{UID: msgs[k].meta.UID, ContentID: msgs[k].meta.ContentID}
	}
	cs, err := c.srv.store.MessageContents(c.ctx, c.acct.ID, s.mbox.ID, refs)
	if err != nil {
		return nil, err
	}
	out := msgs[:0]
	for k := range msgs {
		m := msgs[k]
		if cs[k].Parsed == nil {
			continue // expunged meanwhile, and its content not at hand
		}
		m.content, m.parsed = cs[k], cs[k].Parsed
		if m.meta.ContentID == 0 {
			if i, ok := s.index(m.meta.UID); ok {
				s.msgs[i].content = cs[k].ContentID // learnt now (mailstore.ContentRef)
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// markSeen sets \Seen on fetched messages that lack it (RFC 9051 §6.4.5:
// BODY[...] without .PEEK, RFC822, RFC822.TEXT, BINARY[...]).
func (c *conn) markSeen(msgs []fetchMsg) error {
	var unseen []uint32
	for _, m := range msgs {
		if m.meta.Flags.System&mailstore.FlagSeen == 0 {
			unseen = append(unseen, m.meta.UID)
		}
	}
	if len(unseen) == 0 {
		return nil
	}
	s := c.sel
	res, err := c.srv.store.StoreFlags(c.ctx, c.acct.ID, s.mbox.ID, mailstore.UIDs(unseen...), mailstore.FlagsAdd,
		mailstore.Flags{System: mailstore.FlagSeen}, 0)
	if err != nil {
		return err
	}
	c.applyStore(res)
	updated := make(map[uint32]mailstore.MessageMeta, len(res.Updated))
	for _, m := range res.Updated {
		updated[m.UID] = m
	}
	for i := range msgs {
		if u, ok := updated[msgs[i].meta.UID]; ok {
			msgs[i].meta.Flags, msgs[i].meta.ModSeq = u.Flags, u.ModSeq
			msgs[i].flagsChanged = true
		}
	}
	return nil
}

// checkBinary fails the command before anything is written for a message
// whose BINARY section has an encoding the server cannot decode (RFC 3516
// §4.3: NO [UNKNOWN-CTE]).
func (c *conn) checkBinary(r *fetchReq, m *fetchMsg) error {
	if !r.has[fetchBinary] && !r.has[fetchBinarySize] {
		return nil
	}
	for i := range r.items {
		it := &r.items[i]
		if (it.kind != fetchBinary && it.kind != fetchBinarySize) || it.whole {
			continue
		}
		enc, err := imapmsg.PartEncoding(m.parsed, it.sec.Part)
		if errors.Is(err, imapmsg.ErrNoSuchPart) {
			continue
		}
		if err == nil {
			_, err = imapmsg.DecodeReader(bytes.NewReader(nil), enc)
		}
		if errors.Is(err, imapmsg.ErrUnknownEncoding) {
			return errNo("UNKNOWN-CTE", "Cannot decode this part's content transfer encoding")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeFetch writes one "* n FETCH (...)" response.
func (c *conn) writeFetch(r *fetchReq, m *fetchMsg, uid bool, buf *bytes.Buffer) error {
	seq := c.sel.seqOf(m.meta.UID)
	if seq == 0 {
		return nil
	}
	if r.has[fetchFlags] || m.flagsChanged {
		c.announceKeywords(m.meta.Flags.Keywords)
	}
	w := &c.w
	w.str("* ")
	w.num32(seq)
	w.str(" FETCH (")
	first := true
	sep := func() {
		if !first {
			w.sp()
		}
		first = false
	}
	// With CONDSTORE, a FETCH response caused by setting \Seen carries UID
	// and MODSEQ (RFC 7162 §3.1).
	condFlags := m.flagsChanged && c.condstore
	if (uid || condFlags) && !r.has[fetchUID] {
		sep()
		w.str("UID ")
		w.num32(m.meta.UID) // RFC 9051 §6.4.9
	}
	for i := range r.items {
		it := &r.items[i]
		sep()
		switch it.kind {
		case fetchUID:
			w.str("UID ")
			w.num32(m.meta.UID)
		case fetchFlags:
			w.str("FLAGS ")
			w.flags(m.meta.Flags, c.sel.isRecent(m.meta.UID))
		case fetchInternalDate:
			w.str("INTERNALDATE ")
			w.str(formatDateTime(m.meta.InternalDate))
		case fetchSize:
			w.str("RFC822.SIZE ")
			w.num(uint64(m.meta.Size))
		case fetchModSeq:
			w.str("MODSEQ (")
			w.num(m.meta.ModSeq)
			w.byte(')')
		case fetchEnvelope:
			buf.Reset()
			imapmsg.WriteEnvelope(buf, &m.parsed.Envelope)
			w.str("ENVELOPE ")
			w.raw(buf.Bytes())
		case fetchBody, fetchBodyStructure:
			buf.Reset()
			imapmsg.WriteBodyStructure(buf, &m.parsed.Structure, it.kind == fetchBodyStructure)
			w.str(it.name)
			w.sp()
			w.raw(buf.Bytes())
		case fetchSection:
			if err := c.writeSection(m, it); err != nil {
				return err
			}
		case fetchBinary, fetchBinarySize:
			if err := c.writeBinary(m, it); err != nil {
				return err
			}
		case fetchEmailID, fetchThreadID, fetchSaveDate, fetchPreview:
			c.writeObjectItem(m, it.kind)
		}
	}
	if m.flagsChanged && !r.has[fetchFlags] {
		sep()
		w.str("FLAGS ")
		w.flags(m.meta.Flags, c.sel.isRecent(m.meta.UID))
	}
	if (r.hasChanged || condFlags) && !r.has[fetchModSeq] {
		sep()
		w.str("MODSEQ (") // CHANGEDSINCE implies MODSEQ (RFC 7162 §3.1.4.1)
		w.num(m.meta.ModSeq)
		w.byte(')')
	}
	w.str(")\r\n")
	return w.err
}

// indexesIn returns the positions of the view's messages whose UIDs are
// in set (normalised), ascending.
func (s *selected) indexesIn(set mailstore.UIDSet) []int {
	var out []int
	for _, r := range set {
		lo, _ := s.index(r.Start)
		hi := len(s.msgs)
		if r.Stop != 0 {
			hi = sort.Search(len(s.msgs), func(i int) bool { return s.msgs[i].uid > r.Stop })
		}
		for i := lo; i < hi; i++ {
			out = append(out, i)
		}
	}
	return out
}

// inSet reports whether a normalised set contains u, in O(log n).
func inSet(set mailstore.UIDSet, u uint32) bool {
	i := sort.Search(len(set), func(i int) bool { return set[i].Stop == 0 || set[i].Stop >= u })
	return i < len(set) && set[i].Start <= u
}

// sortedCompact sorts and removes duplicates.
func sortedCompact(u []uint32) []uint32 {
	slices.Sort(u)
	return slices.Compact(u)
}
