package imapd

import (
	"strings"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// maxSearchKeys bounds the keys of one SEARCH program.
const maxSearchKeys = 256

// searchParser builds store criteria from IMAP search keys (RFC 9051
// §6.4.4, RFC 3501 §6.4.4, RFC 7162 §3.1.5 MODSEQ, RFC 5182 "$"). Sequence
// numbers and UID sets become UID sets of the session's view.
type searchParser struct {
	c      *conn
	nkeys  int
	modseq bool // MODSEQ was used: results carry the highest mod-sequence
	recent bool // RECENT, NEW or OLD was used: the session's \Recent set of now
	// crit is the parsed program, without the bound to the view, for
	// re-evaluation by an update context (context.go).
	crit mailstore.SearchCriteria
}

// none is a criterion that matches nothing: an empty, non-nil UID set.
func none(dst *mailstore.SearchCriteria) {
	dst.UIDs = append(dst.UIDs, mailstore.UIDSet{})
}

// and adds sub to dst as a conjunction (double negation keeps the store
// contract simple when a scalar field is already in use).
func and(dst *mailstore.SearchCriteria, sub mailstore.SearchCriteria) {
	dst.Not = append(dst.Not, mailstore.SearchCriteria{Not: []mailstore.SearchCriteria{sub}})
}

// program parses search-key *(SP search-key) to the end of the command.
func (sp *searchParser) program(dst *mailstore.SearchCriteria) error {
	for {
		if err := sp.key(dst); err != nil {
			return err
		}
		if !sp.c.p.accept(' ') {
			return nil
		}
	}
}

// key parses one search-key into dst (AND).
func (sp *searchParser) key(dst *mailstore.SearchCriteria) error {
	p := &sp.c.p
	sp.nkeys++
	if sp.nkeys > maxSearchKeys {
		return errBad("Too many search keys")
	}
	switch ch := p.peek(); {
	case ch == '(':
		return p.list(func() error { return sp.key(dst) })
	case ch >= '0' && ch <= '9' || ch == '*' || ch == '$':
		set, err := p.sequenceSet()
		if err != nil {
			return err
		}
		return sp.addSet(dst, set, false)
	}
	name, err := p.atom()
	if err != nil {
		return errBad("Invalid search key")
	}
	name = strings.ToUpper(name)
	sys := func(f mailstore.SystemFlag, not bool) error {
		if not {
			dst.NotFlag.System |= f
		} else {
			dst.Flag.System |= f
		}
		return nil
	}
	switch name {
	case "ALL":
		return nil
	case "RECENT", "NEW", "OLD":
		// RFC 3501 §6.4.4: NEW is RECENT UNSEEN, OLD is NOT RECENT. The
		// session's \Recent set (empty with IMAP4rev2, which has no such
		// keys) becomes a UID set.
		sp.recent = true
		recent := mailstore.UIDs(sp.c.sel.recent...)
		switch name {
		case "OLD":
			dst.Not = append(dst.Not, mailstore.SearchCriteria{UIDs: []mailstore.UIDSet{recent}})
		case "NEW":
			dst.UIDs = append(dst.UIDs, recent)
			dst.NotFlag.System |= mailstore.FlagSeen
		default:
			dst.UIDs = append(dst.UIDs, recent)
		}
		return nil
	case "ANSWERED":
		return sys(mailstore.FlagAnswered, false)
	case "DELETED":
		return sys(mailstore.FlagDeleted, false)
	case "DRAFT":
		return sys(mailstore.FlagDraft, false)
	case "FLAGGED":
		return sys(mailstore.FlagFlagged, false)
	case "SEEN":
		return sys(mailstore.FlagSeen, false)
	case "UNANSWERED":
		return sys(mailstore.FlagAnswered, true)
	case "UNDELETED":
		return sys(mailstore.FlagDeleted, true)
	case "UNDRAFT":
		return sys(mailstore.FlagDraft, true)
	case "UNFLAGGED":
		return sys(mailstore.FlagFlagged, true)
	case "UNSEEN":
		return sys(mailstore.FlagSeen, true)
	case "KEYWORD", "UNKEYWORD":
		if err := p.sp(); err != nil {
			return err
		}
		kw, err := p.atom()
		if err != nil || !mailstore.ValidKeyword(kw) {
			return errBad("Invalid keyword")
		}
		if name == "KEYWORD" {
			dst.Flag.Keywords = append(dst.Flag.Keywords, kw)
		} else {
			dst.NotFlag.Keywords = append(dst.NotFlag.Keywords, kw)
		}
		return nil
	case "BCC", "CC", "FROM", "SUBJECT", "TO":
		v, err := sp.stringArg()
		if err != nil {
			return err
		}
		dst.Header = append(dst.Header, mailstore.HeaderCriterion{Key: strings.ToLower(name), Value: v})
		return nil
	case "HEADER":
		if err := p.sp(); err != nil {
			return err
		}
		field, err := p.astring()
		if err != nil {
			return err
		}
		if !validFieldName(field) {
			return errBad("Invalid header field name")
		}
		v, err := sp.stringArg()
		if err != nil {
			return err
		}
		dst.Header = append(dst.Header, mailstore.HeaderCriterion{Key: strings.ToLower(field), Value: v})
		return nil
	case "BODY", "TEXT":
		v, err := sp.stringArg()
		if err != nil {
			return err
		}
		if name == "BODY" {
			dst.Body = append(dst.Body, v)
		} else {
			dst.Text = append(dst.Text, v)
		}
		return nil
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		if err := p.sp(); err != nil {
			return err
		}
		d, err := p.date()
		if err != nil {
			return err
		}
		sp.date(dst, name, d)
		return nil
	case "LARGER", "SMALLER":
		if err := p.sp(); err != nil {
			return err
		}
		n, err := p.number64()
		if err != nil {
			return err
		}
		if name == "LARGER" {
			dst.Larger = max(dst.Larger, int64(n))
		} else if n == 0 {
			none(dst) // nothing is smaller than 0 octets
		} else if dst.Smaller == 0 || int64(n) < dst.Smaller {
			dst.Smaller = int64(n)
		}
		return nil
	case "UID":
		if err := p.sp(); err != nil {
			return err
		}
		set, err := p.sequenceSet()
		if err != nil {
			return err
		}
		return sp.addSet(dst, set, true)
	case "MODSEQ":
		return sp.modseqKey(dst)
	case "NOT":
		if err := p.sp(); err != nil {
			return err
		}
		if err := p.enter(); err != nil {
			return err
		}
		defer p.leave()
		var sub mailstore.SearchCriteria
		if err := sp.key(&sub); err != nil {
			return err
		}
		dst.Not = append(dst.Not, sub)
		return nil
	case "OR":
		if err := p.enter(); err != nil {
			return err
		}
		defer p.leave()
		var pair [2]mailstore.SearchCriteria
		for i := range pair {
			if err := p.sp(); err != nil {
				return err
			}
			if err := sp.key(&pair[i]); err != nil {
				return err
			}
		}
		dst.Or = append(dst.Or, pair)
		return nil
	}
	if ok, err := sp.objectSearchKey(dst, name); ok {
		return err
	}
	return errBad("Unknown search key")
}

// stringArg reads SP astring.
func (sp *searchParser) stringArg() (string, error) {
	if err := sp.c.p.sp(); err != nil {
		return "", err
	}
	return sp.c.p.astring()
}

// date sets a date criterion, conjoining when the field is already in use.
func (sp *searchParser) date(dst *mailstore.SearchCriteria, name string, d time.Time) {
	var field *time.Time
	switch name {
	case "BEFORE":
		field = &dst.Before
	case "ON":
		field = &dst.On
	case "SINCE":
		field = &dst.Since
	case "SENTBEFORE":
		field = &dst.SentBefore
	case "SENTON":
		field = &dst.SentOn
	default:
		field = &dst.SentSince
	}
	if field.IsZero() {
		*field = d
		return
	}
	var sub mailstore.SearchCriteria
	sp.date(&sub, name, d)
	and(dst, sub)
}

// modseqKey parses MODSEQ [SP entry-name SP entry-type-req] SP
// mod-sequence-valzer (RFC 7162 §3.1.5); entries are not distinguished, the
// message's mod-sequence is used.
func (sp *searchParser) modseqKey(dst *mailstore.SearchCriteria) error {
	p := &sp.c.p
	if err := p.sp(); err != nil {
		return err
	}
	if p.peek() == '"' {
		if _, err := p.quoted(); err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
		t, err := p.atom()
		if err != nil {
			return err
		}
		switch strings.ToLower(t) {
		case "priv", "shared", "all":
		default:
			return errBad("Invalid MODSEQ entry type")
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	n, err := p.number64()
	if err != nil {
		return err
	}
	sp.modseq = true
	sp.c.enableCondstore()
	if n > dst.ModSeq {
		dst.ModSeq = n
	}
	return nil
}

// addSet restricts dst to a sequence set or UID set of the view.
// Sequence numbers beyond the mailbox simply match nothing.
func (sp *searchParser) addSet(dst *mailstore.SearchCriteria, set numSet, uid bool) error {
	if !uid && !set.saved {
		n := uint32(sp.c.sel.count())
		kept := set.ranges[:0]
		for _, r := range set.ranges {
			a, b := r.start, r.stop
			if a != 0 && b != 0 && a > n && b > n {
				continue
			}
			if a > n {
				a = 0
			}
			if b > n {
				b = 0
			}
			kept = append(kept, numRange{a, b})
		}
		set.ranges = kept
	}
	uids, err := sp.c.resolve(set, uid)
	if err != nil {
		return err
	}
	dst.UIDs = append(dst.UIDs, uids)
	return nil
}
