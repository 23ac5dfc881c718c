package imapd

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/postrider/postrider/mailstore"
)

// selected is a session's view of its selected mailbox (RFC 9051 §2.3.1.2).
// Message sequence numbers are positions in msgs. The view changes only at
// points where the client may be told: new messages are appended and
// announced with EXISTS, expunged ones stay in msgs (pending) until an
// EXPUNGE or VANISHED response may be sent, so that the numbers the client
// uses always mean what it thinks (RFC 9051 §7.5.1).
//
// The view holds every message's metadata (viewmeta.go), exactly as the
// store had it at mod-sequence modseq, and is kept so by catching up
// (Changes since modseq) and by the session's own writes: a write whose
// result has modseq+1 is the only change since, and the view applies it
// without asking the store (ownwrite.go). So FETCH of flags, dates and
// sizes is answered from memory, once the view has caught up with what
// the notifications say may have changed (refreshView).
type selected struct {
	mbox     mailstore.Mailbox
	readOnly bool

	msgs    []vmsg              // ascending UID; seq n is msgs[n-1]
	kws     map[uint32][]string // keywords of the messages that have some
	modseq  uint64              // the view reflects every change up to this mod-sequence
	mark    mailstore.ChangeMark
	stale   bool // the store changed in ways the view has not read (catch up)
	uidNext uint32

	keywords []string // keywords in the mailbox, for FLAGS (RFC 9051 §7.3.5)

	pending  map[uint32]struct{} // expunged UIDs still in uids, not yet announced
	reported map[uint32]uint64   // flag changes this session already sent (UID → modseq)

	notify <-chan struct{}
	cancel func()

	saved []uint32 // SEARCHRES "$" (RFC 5182), ascending UIDs

	contexts []*searchContext // update contexts (RFC 5267 §4, context.go)
	dirty    []uint32         // UIDs whose metadata changed since contexts were updated

	// recent holds the UIDs that are \Recent in this session (RFC 3501
	// §2.3.2), ascending: those it claimed from the store (SELECT), or, in
	// a read-only session, those no session had claimed when it learnt of
	// them. It may hold UIDs not yet in uids (claimed before the EXISTS
	// that announces them) and never holds anything with IMAP4rev2, which
	// has no \Recent (RFC 9051 Appendix E).
	recent []uint32
}

// mayHaveChanged reports whether the view may be behind the store: an own
// write showed it, or a notification (from any node) may say so.
func (c *conn) mayHaveChanged() bool {
	s := c.sel
	return s.stale || c.srv.store.MayHaveChanged(c.acct.ID, s.mbox.ID, s.modseq, s.mark)
}

// refreshView catches up before a command answers from the view (FETCH,
// STORE, SEARCH) when the mailbox may have changed: EXISTS and FETCH
// FLAGS may be sent now; expunges stay pending (RFC 9051 §7.5.1).
func (c *conn) refreshView() error {
	if c.mayHaveChanged() {
		return c.catchUp()
	}
	return nil
}

// isRecent reports whether uid is \Recent in this session.
func (s *selected) isRecent(uid uint32) bool {
	_, ok := slices.BinarySearch(s.recent, uid)
	return ok
}

// recentCount is the number of \Recent messages in the view: the RECENT
// response (RFC 3501 §7.3.2).
func (s *selected) recentCount() uint32 {
	n := uint32(0)
	for _, u := range s.recent {
		if s.seqOf(u) > 0 {
			n++
		}
	}
	return n
}

// addRecent adds UIDs to the session's \Recent set.
func (s *selected) addRecent(uids []uint32) {
	if len(uids) == 0 {
		return
	}
	ascending := len(s.recent) == 0 || uids[0] > s.recent[len(s.recent)-1]
	s.recent = append(s.recent, uids...)
	if !ascending || !slices.IsSorted(uids) {
		s.recent = sortedCompact(s.recent)
	}
}

// trackRecent takes the \Recent status of new messages when the session
// learns of them (RFC 3501 §2.3.2: the first session to be notified of a
// message gets it). The store decides across nodes (ClaimRecent); a
// read-only session claims nothing and treats the new messages as recent,
// as RFC 3501 allows when it cannot tell. added are the UIDs just added to
// the view.
func (c *conn) trackRecent(added []uint32) error {
	s := c.sel
	if c.rev2 || len(added) == 0 {
		return nil
	}
	if s.readOnly {
		s.addRecent(added)
		return nil
	}
	uids, err := c.srv.store.ClaimRecent(c.ctx, c.acct.ID, s.mbox.ID)
	if err != nil {
		return err
	}
	s.addRecent(uids)
	return nil
}

// writeRecent sends "* n RECENT" to an IMAP4rev1 client (RFC 3501 §7.3.2;
// RFC 9051 has no RECENT response).
func (c *conn) writeRecent() {
	if c.rev2 {
		return
	}
	c.w.str("* ")
	c.w.num32(c.sel.recentCount())
	c.w.str(" RECENT\r\n")
}

// seqOf returns the sequence number of uid, or 0 if it is not in the view.
func (s *selected) seqOf(uid uint32) uint32 {
	i, ok := s.index(uid)
	if !ok {
		return 0
	}
	return uint32(i + 1)
}

func (s *selected) maxUID() uint32 {
	if len(s.msgs) == 0 {
		return 0
	}
	return s.msgs[len(s.msgs)-1].uid
}

// noteKeywords adds keywords not yet known; it reports whether any was new.
func (s *selected) noteKeywords(kws []string) bool {
	added := false
	for _, k := range kws {
		if !containsFold(s.keywords, k) && isAtom(k) && len(s.keywords) < 1000 {
			s.keywords = append(s.keywords, k)
			added = true
		}
	}
	return added
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// remove takes expunged UIDs out of the view and returns the sequence
// numbers they had, in descending order, so that each EXPUNGE response can be
// sent as is (RFC 9051 §7.5.1). It runs in O(n log n) for any number of UIDs.
func (s *selected) remove(uids []uint32) []uint32 {
	if len(uids) == 0 {
		return nil
	}
	gone := slices.Clone(uids)
	slices.Sort(gone)
	var seqs []uint32
	out := s.msgs[:0]
	j := 0
	for i, m := range s.msgs {
		u := m.uid
		for j < len(gone) && gone[j] < u {
			j++
		}
		if j < len(gone) && gone[j] == u {
			seqs = append(seqs, uint32(i+1))
			if m.hasKw {
				delete(s.kws, u)
			}
			continue
		}
		out = append(out, m)
	}
	s.msgs = out
	slices.Reverse(seqs)
	for _, u := range gone {
		delete(s.pending, u)
	}
	if len(s.recent) > 0 {
		s.recent = slices.DeleteFunc(s.recent, func(u uint32) bool {
			_, found := slices.BinarySearch(gone, u)
			return found
		})
	}
	return seqs
}

// unselect leaves the selected state.
func (c *conn) unselect() {
	if c.sel != nil {
		c.sel.cancel()
		c.sel = nil
	}
	if c.state == stateSelected {
		c.state = stateAuth
	}
}

// sendUpdates catches up with the store when the mailbox may have changed
// (or the command asks for it) and sends what the client may be told now
// (RFC 9051 §7: untagged responses before the tagged one).
func (c *conn) sendUpdates(cx *cmdCtx) error {
	s := c.sel
	if s == nil {
		return nil
	}
	select {
	case <-s.notify: // MayHaveChanged says what it was about
	default:
	}
	if cx.refresh || c.mayHaveChanged() {
		if err := c.catchUp(); err != nil {
			return err
		}
	}
	if err := c.flushContexts(); err != nil {
		return err
	}
	c.sendExpunges(cx.mayExpunge())
	return nil
}

// catchUp reads the changes after the view's mod-sequence and sends EXISTS,
// FLAGS and FETCH responses; expunges are queued in pending.
func (c *conn) catchUp() error {
	s := c.sel
	mark := c.srv.store.ChangeMark() // before the read (see ChangeFeed)
	ch, err := c.srv.store.Changes(c.ctx, c.acct.ID, s.mbox.ID, s.modseq)
	if err != nil {
		return err
	}
	maxUID := s.maxUID()
	var added []uint32
	newKeywords := false
	var changed []mailstore.MessageMeta
	for _, m := range ch.Updated {
		if m.UID > maxUID {
			s.add(m)
			maxUID = m.UID
			added = append(added, m.UID)
			newKeywords = s.noteKeywords(m.Flags.Keywords) || newKeywords
			continue
		}
		i, ok := s.index(m.UID)
		if !ok {
			continue // gone already
		}
		s.set(i, m)
		if r, ok := s.reported[m.UID]; ok && r >= m.ModSeq {
			continue // this session sent it already
		}
		newKeywords = s.noteKeywords(m.Flags.Keywords) || newKeywords
		changed = append(changed, m)
	}
	gone := ch.Vanished
	if ch.VanishedIncomplete {
		// Tombstones pruned: the view's messages that no longer exist.
		live, err := c.liveUIDs()
		if err != nil {
			return err
		}
		gone = nil
		for _, m := range s.msgs {
			if _, ok := slices.BinarySearch(live, m.uid); !ok {
				gone = append(gone, m.uid)
			}
		}
	}
	for _, u := range gone {
		if s.seqOf(u) > 0 {
			if s.pending == nil {
				s.pending = make(map[uint32]struct{})
			}
			s.pending[u] = struct{}{}
		}
	}
	if ch.HighestModSeq > s.modseq {
		s.modseq = ch.HighestModSeq
	}
	s.mark, s.stale = mark, false
	if ch.UIDNext > s.uidNext {
		s.uidNext = ch.UIDNext
	}
	if maxUID >= s.uidNext {
		s.uidNext = maxUID + 1
	}
	s.reported = nil
	if err := c.announceAdded(added, newKeywords); err != nil {
		return err
	}
	for _, m := range changed {
		if _, ok := s.pending[m.UID]; ok {
			continue
		}
		c.writeFlagsFetch(s.seqOf(m.UID), m)
	}
	return nil
}

// sendExpunges announces pending expunges when allowed: VANISHED with
// QRESYNC enabled (RFC 7162 §3.2.10), else EXPUNGE per message.
func (c *conn) sendExpunges(allowed bool) {
	s := c.sel
	if !allowed || len(s.pending) == 0 {
		return
	}
	gone := make([]uint32, 0, len(s.pending))
	for u := range s.pending {
		gone = append(gone, u)
	}
	s.pending = nil
	c.announceExpunged(gone)
}

// announceExpunged removes uids from the view and tells the client. When
// that took \Recent messages away, an IMAP4rev1 client is sent the new
// RECENT count too: clients (imaptest's checkpoints among them) keep the
// last count they were told, which would otherwise still include messages
// that no longer exist (RFC 3501 §7.3.2: the client records each update).
func (c *conn) announceExpunged(uids []uint32) {
	s := c.sel
	if !c.rev2 && len(s.recent) > 0 {
		before := s.recentCount()
		defer func() {
			if s.recentCount() != before {
				c.writeRecent()
			}
		}()
	}
	c.contextsExpunged(uids) // REMOVEFROM first (RFC 5267 §4.3.4)
	if c.qresync {
		var in []uint32
		for _, u := range uids {
			if s.seqOf(u) > 0 {
				in = append(in, u)
			}
		}
		s.remove(in)
		if len(in) > 0 {
			slices.Sort(in)
			in = slices.Compact(in)
			c.w.str("* VANISHED ")
			c.w.str(formatUIDs(in))
			c.w.crlf()
		}
		return
	}
	for _, seq := range s.remove(uids) {
		c.w.str("* ")
		c.w.num32(seq)
		c.w.str(" EXPUNGE\r\n")
	}
}

// enableCondstore records a CONDSTORE enabling command (RFC 7162 §3.1).
// The first one issued with a mailbox selected reports the mailbox's
// HIGHESTMODSEQ, unless expunges are pending: the value must not pass an
// expunge the client has not been told of (RFC 7162 §3.2).
func (c *conn) enableCondstore() {
	if c.condstore {
		return
	}
	c.condstore = true
	if s := c.sel; s != nil && len(s.pending) == 0 {
		c.untaggedOK("HIGHESTMODSEQ "+utoa(s.modseq), "Highest")
	}
}

// writeFlagsFetch sends an unsolicited FETCH with a message's flags (and
// its UID, and MODSEQ with CONDSTORE, RFC 7162 §3.1.4).
func (c *conn) writeFlagsFetch(seq uint32, m mailstore.MessageMeta) {
	s := c.sel
	c.announceKeywords(m.Flags.Keywords)
	c.w.str("* ")
	c.w.num32(seq)
	c.w.str(" FETCH (UID ")
	c.w.num32(m.UID)
	c.w.str(" FLAGS ")
	c.w.flags(m.Flags, s.isRecent(m.UID))
	if c.condstore {
		c.w.str(" MODSEQ (")
		c.w.num(m.ModSeq)
		c.w.byte(')')
	}
	c.w.str(")\r\n")
}

// announceKeywords sends FLAGS and PERMANENTFLAGS before a response that
// uses keywords the client has not been told of (RFC 9051 §7.3.5: FLAGS
// lists every flag in use in the mailbox). It must be called between
// responses, never inside one.
func (c *conn) announceKeywords(kws []string) {
	if len(kws) > 0 && c.sel.noteKeywords(kws) {
		c.writeFlagsResponses()
	}
}

// writeFlagsResponses sends FLAGS and PERMANENTFLAGS (RFC 9051 §7.3.5,
// §7.1).
func (c *conn) writeFlagsResponses() {
	s := c.sel
	c.w.str(`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft`)
	for _, k := range s.keywords {
		c.w.sp()
		c.w.str(k)
	}
	c.w.str(")\r\n")
	if s.readOnly {
		c.w.str("* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n")
		return
	}
	c.w.str(`* OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft`)
	for _, k := range s.keywords {
		c.w.sp()
		c.w.str(k)
	}
	c.w.str(` \*)] Flags permitted` + "\r\n")
}

// resolve turns a client's sequence set or UID set into UID ranges of the
// view (never nil: a nil UIDSet means "all" to the store). Sequence numbers
// beyond the view are an error (RFC 9051 §9 seq-number); UIDs are clamped
// to the view, so that a command never touches a message the session has
// not announced.
func (c *conn) resolve(set numSet, uid bool) (mailstore.UIDSet, error) {
	s := c.sel
	out := mailstore.UIDSet{}
	if set.saved {
		for _, u := range s.saved {
			if s.seqOf(u) > 0 {
				out = append(out, mailstore.UIDRange{Start: u, Stop: u})
			}
		}
		return normalize(out), nil
	}
	n := uint32(s.count())
	maxUID := s.maxUID()
	for _, r := range set.ranges {
		star := r.start == 0 || r.stop == 0
		if !uid {
			a, b := r.bounds(n)
			if n == 0 && star {
				continue
			}
			if b > n {
				return nil, errBad("Invalid message sequence number")
			}
			out = append(out, mailstore.UIDRange{Start: s.msgs[a-1].uid, Stop: s.msgs[b-1].uid})
			continue
		}
		if maxUID == 0 {
			continue
		}
		a, b := r.bounds(maxUID)
		if a > maxUID {
			continue
		}
		out = append(out, mailstore.UIDRange{Start: a, Stop: min(b, maxUID)})
	}
	return normalize(out), nil
}

// normalize sorts and merges ranges.
func normalize(set mailstore.UIDSet) mailstore.UIDSet {
	if len(set) < 2 {
		return set
	}
	sort.Slice(set, func(i, j int) bool { return set[i].Start < set[j].Start })
	out := set[:1]
	for _, r := range set[1:] {
		last := &out[len(out)-1]
		if r.Start <= last.Stop+1 && last.Stop != 0 {
			last.Stop = max(last.Stop, r.Stop)
			continue
		}
		out = append(out, r)
	}
	return out
}

// formatUIDs formats ascending numbers as a compact sequence set
// ("1:3,7").
func formatUIDs(nums []uint32) string {
	var b strings.Builder
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(nums[i]), 10))
		if j > i {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(nums[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}

// setContains reports whether a client's UID set (with "*" = maxUID)
// contains u.
func setContains(set numSet, u, maxUID uint32) bool {
	for _, r := range set.ranges {
		if a, b := r.bounds(maxUID); u >= a && u <= b {
			return true
		}
	}
	return false
}
