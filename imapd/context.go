package imapd

import (
	"slices"

	"github.com/postrider/postrider/mailstore"
)

// Update contexts: CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4).
//
// A SEARCH or SORT with RETURN (UPDATE) keeps its search program (as the
// store criteria it was parsed into: sequence numbers and "$" already
// turned into UIDs, RFC 5267 §4.3) and its current result. Every message
// whose metadata the view sets afterwards (a catch-up after another
// session's or node's change, the session's own STORE, APPEND, COPY or
// MOVE into the mailbox, a delivery) is noted in selected.dirty. When the
// session sends updates (after a command, and in IDLE) the program is
// evaluated by the store for the noted messages only: one query per
// context, restricted to their UIDs, whatever the size of the mailbox.
// The difference with the kept result is sent as REMOVEFROM and ADDTO
// (after the EXISTS that announced new messages, RFC 5267 §4.3.3).
// Expunged messages leave the results when the session announces the
// expunge, with REMOVEFROM before the EXPUNGE or VANISHED (RFC 5267
// §4.3.4). A SORT context also keeps the sort keys of its result (sort
// keys never change: none depends on flags), so that a new member is
// placed by binary search; only the keys of new members are read.
//
// Bounds (RFC 5267 §4.3.1, §6): at most maxUpdateContexts per session,
// and SORT contexts keep at most maxContextSortKeys keys in all; past
// them the command answers as usual with "* NO [NOUPDATE tag]". So does
// a program with RECENT, NEW or OLD (IMAP4rev1), whose \Recent set is
// the session's at the time of the command.

const (
	// maxUpdateContexts bounds the update contexts of a session (RFC 5267
	// §4.3.1: at least one).
	maxUpdateContexts = 8
	// maxContextSortKeys bounds the sort keys all SORT contexts of a
	// session keep: some 128 octets each plus their strings (sortkeys.go).
	maxContextSortKeys = 100_000
)

// searchContext is one update context.
type searchContext struct {
	tag  string
	uid  bool // results as UIDs (UID SEARCH, UID SORT)
	crit mailstore.SearchCriteria
	sort []sortCriterion // nil for SEARCH

	members []uint32   // the result, ascending UIDs
	keys    []sortKeys // SORT: the result in sort order, seq = UID
}

// contextFor returns the session's update context with tag, or nil.
func (s *selected) contextFor(tag string) *searchContext {
	for _, sc := range s.contexts {
		if sc.tag == tag {
			return sc
		}
	}
	return nil
}

// touch notes that a message's metadata changed: update contexts
// re-evaluate it.
func (s *selected) touch(uid uint32) {
	if len(s.contexts) > 0 {
		s.dirty = append(s.dirty, uid)
	}
}

// checkUpdateTag rejects UPDATE with a tag an active context uses (RFC
// 5267 §4.3: BAD). It runs before the command has any effect.
func (c *conn) checkUpdateTag(cx *cmdCtx, ret searchReturn) error {
	if ret.update && c.sel.contextFor(cx.tag) != nil {
		return errBad("Tag in use by an update context") // RFC 5267 §4.3
	}
	return nil
}

// addContext makes an update context of a SEARCH or SORT whose result
// (in the order of the response: ascending for SEARCH) is results; keys
// are the sort keys of a SORT's result in the same order. When the
// bounds do not allow it the client is told with NOUPDATE (RFC 5267
// §4.3.1) and the command completes as usual.
func (c *conn) addContext(cx *cmdCtx, sp *searchParser, crit []sortCriterion, results []uint32, keys []sortKeys) {
	s := c.sel
	refuse := len(s.contexts) >= maxUpdateContexts
	if crit != nil {
		n := len(keys)
		for _, sc := range s.contexts {
			n += len(sc.keys)
		}
		refuse = refuse || n > maxContextSortKeys
	}
	text := "Too many update contexts"
	if sp.recent {
		// The program holds the session's \Recent set of now, which later
		// deliveries change: no updates rather than wrong ones.
		refuse, text = true, "No updates for RECENT, NEW or OLD"
	}
	if refuse {
		c.w.str("* NO [NOUPDATE ")
		c.w.string(cx.tag)
		c.w.str("] " + text + "\r\n")
		return
	}
	sc := &searchContext{tag: cx.tag, uid: cx.uid, crit: sp.crit, sort: crit}
	sc.members = slices.Clone(results)
	if crit != nil {
		slices.Sort(sc.members)
		sc.keys = slices.Clone(keys)
		for i := range sc.keys {
			sc.keys[i].seq = sc.keys[i].uid // mailbox order, stable across expunges
		}
	}
	s.contexts = append(s.contexts, sc)
	c.log.Debug("update context", "tag", cx.tag, "sort", crit != nil, "results", len(results), "contexts", len(s.contexts))
}

// CANCELUPDATE (RFC 5267 §4.3.5): 1*(SP quoted) tags of update contexts.
// An unknown tag cancels nothing and is a NO.
func cmdCancelUpdate(c *conn, cx *cmdCtx) error {
	p := &c.p
	var tags []string
	for {
		if err := p.sp(); err != nil {
			return err
		}
		t, err := p.quoted()
		if err != nil {
			return err
		}
		if len(tags) >= maxUpdateContexts*4 {
			return errBad("Too many tags")
		}
		tags = append(tags, t)
		if p.atEnd() {
			break
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	s := c.sel
	for _, t := range tags {
		if s.contextFor(t) == nil {
			return errNo("", "No update context with tag "+quoteTag(t))
		}
	}
	s.contexts = slices.DeleteFunc(s.contexts, func(sc *searchContext) bool {
		return slices.Contains(tags, sc.tag)
	})
	if len(s.contexts) == 0 {
		s.dirty = nil
	}
	return nil
}

// quoteTag shows a client's tag in a response text, bounded.
func quoteTag(t string) string {
	if len(t) > 64 {
		t = t[:64]
	}
	out := make([]byte, 0, len(t)+2)
	out = append(out, '"')
	for i := 0; i < len(t); i++ {
		if b := t[i]; b >= 0x20 && b < 0x7f && b != '"' && b != '\\' {
			out = append(out, b)
		}
	}
	return string(append(out, '"'))
}

// flushContexts re-evaluates the messages noted since the last flush for
// every update context and sends ADDTO and REMOVEFROM (RFC 5267 §4.3.2).
// Messages pending expunge are left to contextsExpunged.
func (c *conn) flushContexts() error {
	s := c.sel
	if len(s.contexts) == 0 || len(s.dirty) == 0 {
		s.dirty = nil
		return nil
	}
	dirty := sortedCompact(s.dirty)
	s.dirty = nil
	kept := dirty[:0]
	for _, u := range dirty {
		if _, gone := s.pending[u]; !gone && s.seqOf(u) > 0 {
			kept = append(kept, u)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	set := mailstore.UIDs(kept...)
	for _, sc := range s.contexts {
		crit := sc.crit
		crit.UIDs = append(slices.Clip(crit.UIDs), set)
		found, err := c.srv.store.Search(c.ctx, c.acct.ID, s.mbox.ID, &crit)
		if err != nil {
			s.dirty = append(s.dirty, kept...) // again next time
			return err
		}
		var added, removed []uint32
		j := 0
		for _, u := range kept {
			for j < len(found) && found[j] < u {
				j++
			}
			match := j < len(found) && found[j] == u
			_, member := slices.BinarySearch(sc.members, u)
			switch {
			case match && !member:
				added = append(added, u)
			case !match && member:
				removed = append(removed, u)
			}
		}
		if len(added) == 0 && len(removed) == 0 {
			continue
		}
		if err := c.updateContext(sc, added, removed); err != nil {
			s.dirty = append(s.dirty, kept...)
			return err
		}
	}
	return nil
}

// contextsExpunged takes expunged UIDs out of every context's result and
// sends REMOVEFROM while their sequence numbers are still valid: the
// caller sends EXPUNGE (or VANISHED) after (RFC 5267 §4.3.4).
func (c *conn) contextsExpunged(uids []uint32) {
	s := c.sel
	if len(s.contexts) == 0 || len(uids) == 0 {
		return
	}
	gone := sortedCompact(slices.Clone(uids))
	for _, sc := range s.contexts {
		var removed []uint32
		for _, u := range gone {
			if _, member := slices.BinarySearch(sc.members, u); member {
				removed = append(removed, u)
			}
		}
		if len(removed) > 0 {
			// Removal reads no keys and so cannot fail.
			_ = c.updateContext(sc, nil, removed)
		}
	}
}

// updateContext applies a change of membership to a context and sends it:
// one ESEARCH response with REMOVEFROM before ADDTO. For SEARCH the
// context position is 0 and the sets are in mailbox order (RFC 5267
// §4.3.3, §4.3.4); for SORT each run of adjacent results is one pair at
// its position, in the order the client applies them.
func (c *conn) updateContext(sc *searchContext, added, removed []uint32) error {
	var addKeys []sortKeys
	if sc.sort != nil && len(added) > 0 {
		var err error
		if addKeys, err = c.loadSortKeys(added, sc.sort); err != nil {
			return err
		}
		for i := range addKeys {
			addKeys[i].seq = addKeys[i].uid
		}
		slices.SortFunc(addKeys, func(a, b sortKeys) int { return compareSort(sc.sort, &a, &b) })
	}
	c.w.str("* ESEARCH (TAG ")
	c.w.string(sc.tag)
	c.w.byte(')')
	if sc.uid {
		c.w.str(" UID")
	}
	if len(removed) > 0 {
		c.w.str(" REMOVEFROM (")
		if sc.sort == nil {
			c.w.str("0 ")
			c.w.str(formatUIDs(c.numbers(removed, sc.uid)))
		} else {
			c.writeSortRemovals(sc, removed)
		}
		c.w.byte(')')
		sc.members = slices.DeleteFunc(sc.members, func(u uint32) bool {
			_, found := slices.BinarySearch(removed, u)
			return found
		})
	}
	if len(added) > 0 {
		c.w.str(" ADDTO (")
		if sc.sort == nil {
			c.w.str("0 ")
			c.w.str(formatUIDs(c.numbers(added, sc.uid)))
		} else {
			c.writeSortAdditions(sc, addKeys)
		}
		c.w.byte(')')
		sc.members = mergeAscending(sc.members, added)
	}
	c.w.crlf()
	return nil
}

// writeSortRemovals removes removed (ascending UIDs) from a SORT
// context's ordered result and writes the REMOVEFROM pairs: each run of
// adjacent results at the position its first one has once the runs
// before it are gone. One pass finds them (reading UIDs only); the
// results after each run move once.
func (c *conn) writeSortRemovals(sc *searchContext, removed []uint32) {
	type run struct{ start, end int } // indexes in sc.keys, end exclusive
	var runs []run
	for i := range sc.keys {
		if _, found := slices.BinarySearch(removed, sc.keys[i].uid); !found {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1].end == i {
			runs[n-1].end++
		} else {
			runs = append(runs, run{i, i + 1})
		}
	}
	gone := 0
	for k, r := range runs {
		if k > 0 {
			c.w.sp()
		}
		c.w.num(uint64(r.start + 1 - gone))
		c.w.sp()
		c.w.str(formatUIDs(c.numbers(keyUIDs(sc.keys[r.start:r.end]), sc.uid)))
		gone += r.end - r.start
	}
	for k := len(runs) - 1; k >= 0; k-- {
		sc.keys = slices.Delete(sc.keys, runs[k].start, runs[k].end)
	}
}

// keyUIDs returns the UIDs of keys, in order.
func keyUIDs(keys []sortKeys) []uint32 {
	out := make([]uint32, len(keys))
	for i := range keys {
		out[i] = keys[i].uid
	}
	return out
}

// addPairs writes the pairs of an ADDTO of a SORT context: each run of
// new results that end up adjacent as one pair, at the position its
// first one takes (RFC 5267 §4.3.3).
type addPairs struct {
	c       *conn
	uid     bool
	written bool
	pos     int
	run     []uint32
}

// add notes a result inserted at pos (1-based, in the list as it is once
// the results added before are in).
func (ap *addPairs) add(pos int, uid uint32) {
	if len(ap.run) > 0 && pos != ap.pos+len(ap.run) {
		ap.flush()
	}
	if len(ap.run) == 0 {
		ap.pos = pos
	}
	ap.run = append(ap.run, uid)
}

func (ap *addPairs) flush() {
	if len(ap.run) == 0 {
		return
	}
	w := &ap.c.w
	if ap.written {
		w.sp()
	}
	ap.written = true
	w.num(uint64(ap.pos))
	w.sp()
	w.str(formatUIDs(ap.c.numbers(ap.run, ap.uid)))
	ap.run = ap.run[:0]
}

// maxSortInserts is the number of additions past which a SORT context's
// result is rebuilt by one merge instead of one insertion each.
const maxSortInserts = 32

// writeSortAdditions inserts added (sorted by the criteria) into a SORT
// context's ordered result and writes the ADDTO pairs. Inserting them in
// this order leaves every earlier result in place. A few are placed by
// binary search (the results after each move once); many by one merge.
func (c *conn) writeSortAdditions(sc *searchContext, added []sortKeys) {
	ap := &addPairs{c: c, uid: sc.uid}
	defer ap.flush()
	less := func(a, b *sortKeys) bool { return compareSort(sc.sort, a, b) < 0 }
	if len(added) > maxSortInserts {
		merged := make([]sortKeys, 0, len(sc.keys)+len(added))
		i, j := 0, 0
		for i < len(sc.keys) || j < len(added) {
			if j < len(added) && (i >= len(sc.keys) || less(&added[j], &sc.keys[i])) {
				merged = append(merged, added[j])
				ap.add(len(merged), added[j].uid)
				j++
				continue
			}
			merged = append(merged, sc.keys[i])
			i++
		}
		sc.keys = merged
		return
	}
	lo := 0
	for j := range added {
		// Later additions sort after earlier ones: search after them.
		i, _ := slices.BinarySearchFunc(sc.keys[lo:], added[j], func(a, b sortKeys) int { return compareSort(sc.sort, &a, &b) })
		i += lo
		sc.keys = slices.Insert(sc.keys, i, added[j])
		ap.add(i+1, added[j].uid)
		lo = i + 1
	}
}

// mergeAscending merges two ascending lists without common elements in
// linear time.
func mergeAscending(a, b []uint32) []uint32 {
	out := make([]uint32, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i] < b[j] {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}
