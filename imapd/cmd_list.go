package imapd

import (
	"sort"
	"strings"

	"github.com/postrider/postrider/mailstore"
)

// Bounds on LIST patterns: names are at most MaxMailboxNameLength octets,
// so longer patterns cannot match anything useful.
const (
	maxListPatterns  = 16
	maxPatternLength = 2 * mailstore.MaxMailboxNameLength
	maxWildcards     = 32
)

// listReturn holds LIST return options (RFC 5258 §3.2, RFC 5819, RFC 6154).
type listReturn struct {
	subscribed bool
	children   bool
	specialUse bool
	status     []string // STATUS items (LIST-STATUS)
	metadata   []string // METADATA entry names (LIST-METADATA)
}

// listSelect holds LIST selection options (RFC 5258 §3.1, RFC 6154 §3).
type listSelect struct {
	subscribed     bool
	recursiveMatch bool
	specialUse     bool
}

// mboxTree is the account's mailboxes and subscriptions, for LIST.
type mboxTree struct {
	boxes      map[string]mailstore.Mailbox
	parents    map[string]bool // names with at least one existing child
	subscribed map[string]bool
}

func newTree(boxes []mailstore.Mailbox) *mboxTree {
	t := &mboxTree{
		boxes:      make(map[string]mailstore.Mailbox, len(boxes)),
		parents:    make(map[string]bool),
		subscribed: make(map[string]bool),
	}
	for _, b := range boxes {
		t.boxes[b.Name] = b
		if b.Subscribed {
			t.subscribed[b.Name] = true
		}
		for i := strings.LastIndex(b.Name, "/"); i > 0; i = strings.LastIndex(b.Name[:i], "/") {
			t.parents[b.Name[:i]] = true
		}
	}
	return t
}

// attributes returns the LIST attributes of name (RFC 9051 §7.3.1).
func (t *mboxTree) attributes(name string, ret listReturn) []string {
	var attrs []string
	b, exists := t.boxes[name]
	if !exists {
		attrs = append(attrs, `\NonExistent`) // RFC 5258 §3.4; implies \Noselect
	}
	if t.parents[name] {
		attrs = append(attrs, `\HasChildren`) // RFC 3348
	} else if exists {
		attrs = append(attrs, `\HasNoChildren`)
	}
	if ret.subscribed && t.subscribed[name] {
		attrs = append(attrs, `\Subscribed`)
	}
	if exists && b.SpecialUse != "" {
		attrs = append(attrs, b.SpecialUse) // RFC 6154 §2
	}
	return attrs
}

// LIST (RFC 9051 §6.3.9) with LIST-EXTENDED (RFC 5258), LIST-STATUS
// (RFC 5819), SPECIAL-USE (RFC 6154) and CHILDREN (RFC 3348).
func cmdList(c *conn, cx *cmdCtx) error {
	var sel listSelect
	var ret listReturn
	if err := c.p.sp(); err != nil {
		return err
	}
	if c.p.peek() == '(' {
		err := c.p.list(func() error {
			opt, err := c.p.atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(opt) {
			case "SUBSCRIBED":
				sel.subscribed, ret.subscribed = true, true
			case "RECURSIVEMATCH":
				sel.recursiveMatch = true
			case "SPECIAL-USE":
				sel.specialUse = true
			case "REMOTE":
			default:
				return errBad("Unknown LIST selection option")
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := c.p.sp(); err != nil {
			return err
		}
		if sel.recursiveMatch && !sel.subscribed && !sel.specialUse {
			return errBad("RECURSIVEMATCH needs another selection option") // RFC 5258 §3.1
		}
	}
	ref, err := c.p.astring()
	if err != nil {
		return err
	}
	if err := c.p.sp(); err != nil {
		return err
	}
	var patterns []string
	if c.p.peek() == '(' {
		err = c.p.list(func() error {
			if len(patterns) >= maxListPatterns {
				return errBad("Too many patterns")
			}
			pat, err := c.p.listMailbox()
			patterns = append(patterns, pat)
			return err
		})
	} else {
		var pat string
		pat, err = c.p.listMailbox()
		patterns = append(patterns, pat)
	}
	if err != nil {
		return err
	}
	if c.p.accept(' ') {
		if !c.p.acceptWord("RETURN") {
			return errBad("Expected RETURN")
		}
		if err := c.p.sp(); err != nil {
			return err
		}
		if err := c.listReturnOpts(&ret); err != nil {
			return err
		}
	}
	if err := c.p.end(); err != nil {
		return err
	}
	// CHILDREN and special-use attributes are always returned (RFC 3348,
	// RFC 6154 §2, RFC 9051 §7.3.1).
	ret.children = true
	ret.specialUse = true

	// RFC 9051 §6.3.9: an empty pattern asks for the delimiter.
	if len(patterns) == 1 && patterns[0] == "" && !sel.subscribed && !sel.specialUse {
		c.w.str(`* LIST (\Noselect) "/" ""` + "\r\n")
		return nil
	}
	return c.list(ref, patterns, sel, ret, "LIST")
}

// listReturnOpts parses "(" [return-option *(SP return-option)] ")".
func (c *conn) listReturnOpts(ret *listReturn) error {
	return c.p.list(func() error {
		opt, err := c.p.atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(opt) {
		case "SUBSCRIBED":
			ret.subscribed = true
		case "CHILDREN":
			ret.children = true
		case "SPECIAL-USE":
			ret.specialUse = true
		case "STATUS":
			if err := c.p.sp(); err != nil {
				return err
			}
			ret.status, err = c.statusItems()
			return err
		case "METADATA":
			ret.metadata, err = c.listMetadataOpt()
			return err
		default:
			return errBad("Unknown LIST return option")
		}
		return nil
	})
}

// LSUB (RFC 3501 §6.3.9; deprecated by RFC 9051 but kept for IMAP4rev1
// clients).
func cmdLsub(c *conn, cx *cmdCtx) error {
	if err := c.p.sp(); err != nil {
		return err
	}
	ref, err := c.p.astring()
	if err != nil {
		return err
	}
	if err := c.p.sp(); err != nil {
		return err
	}
	pat, err := c.p.listMailbox()
	if err != nil {
		return err
	}
	if err := c.p.end(); err != nil {
		return err
	}
	if pat == "" {
		c.w.str(`* LSUB (\Noselect) "/" ""` + "\r\n")
		return nil
	}
	return c.list(ref, []string{pat}, listSelect{subscribed: true}, listReturn{}, "LSUB")
}

// list answers LIST and LSUB.
func (c *conn) list(ref string, patterns []string, sel listSelect, ret listReturn, verb string) error {
	var matchers []*pattern
	for _, p := range patterns {
		full := ref + p
		if !c.utf8Names() {
			d, err := decodeMUTF7(full)
			if err != nil {
				return nil // no mailbox has such a name
			}
			full = d
		}
		if strings.HasPrefix(full, "#") || strings.HasPrefix(full, "~") {
			continue // no other namespaces
		}
		m, err := compilePattern(full)
		if err != nil {
			return err
		}
		matchers = append(matchers, m)
	}
	if len(matchers) == 0 {
		return nil
	}
	ctx := c.ctx
	boxes, err := c.srv.store.ListMailboxes(ctx, c.acct.ID)
	if err != nil {
		return err
	}
	t := newTree(boxes)
	if sel.subscribed || ret.subscribed {
		subs, err := c.srv.store.ListSubscriptions(ctx, c.acct.ID)
		if err != nil {
			return err
		}
		for _, s := range subs {
			t.subscribed[s] = true
		}
	}
	// The names that satisfy the selection criteria.
	selected := map[string]bool{}
	switch {
	case sel.subscribed:
		for n := range t.subscribed {
			if !sel.specialUse || t.boxes[n].SpecialUse != "" {
				selected[n] = true
			}
		}
	case sel.specialUse:
		for n, b := range t.boxes {
			if b.SpecialUse != "" {
				selected[n] = true
			}
		}
	default:
		for n := range t.boxes {
			selected[n] = true
		}
	}
	matches := func(name string) bool {
		for _, m := range matchers {
			if m.match(name) {
				return true
			}
		}
		return false
	}
	out := map[string]bool{}       // name → listed
	childInfo := map[string]bool{} // RFC 5258 §3.5 CHILDINFO
	for n := range selected {
		if matches(n) {
			out[n] = true
		}
		// RFC 5258 §3.5: a matching ancestor of a selected mailbox that
		// the patterns do not return is listed with CHILDINFO (LSUB: with
		// \Noselect, RFC 3501 §6.3.9).
		if (sel.recursiveMatch || verb == "LSUB") && !matches(n) {
			for i := strings.LastIndex(n, "/"); i > 0; i = strings.LastIndex(n[:i], "/") {
				a := n[:i]
				if !matches(a) {
					continue
				}
				if sel.recursiveMatch {
					childInfo[a] = true
					out[a] = true
				} else if !out[a] {
					// LSUB: a parent matched by "%" whose subscribed
					// child is not is listed \Noselect (RFC 3501 §6.3.9).
					out[a] = selected[a]
				}
			}
		}
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return lessName(names[i], names[j]) })
	for _, n := range names {
		if verb == "LSUB" {
			c.w.str("* LSUB (")
			if !out[n] {
				c.w.str(`\Noselect`)
			}
			c.w.str(`) "/" `)
			c.writeName(n)
			c.w.crlf()
			continue
		}
		attrs := t.attributes(n, ret)
		c.w.str("* LIST (")
		c.w.str(strings.Join(attrs, " "))
		c.w.str(`) "/" `)
		c.writeName(n)
		if childInfo[n] {
			c.w.str(` ("CHILDINFO" ("SUBSCRIBED"))`)
		}
		c.w.crlf()
		if b, ok := t.boxes[n]; ok && len(ret.status) > 0 {
			st, err := c.srv.store.MailboxStatus(c.ctx, c.acct.ID, b.ID)
			if err != nil {
				return err
			}
			if err := c.writeStatus(st, ret.status); err != nil {
				return err
			}
		}
		if _, ok := t.boxes[n]; ok && len(ret.metadata) > 0 {
			if err := c.listMetadata(n, ret.metadata); err != nil {
				return err
			}
		}
	}
	return nil
}

// lessName orders INBOX first, then by name.
func lessName(a, b string) bool {
	ai, bi := a == "INBOX" || strings.HasPrefix(a, "INBOX/"), b == "INBOX" || strings.HasPrefix(b, "INBOX/")
	if ai != bi {
		return ai
	}
	return a < b
}

// pattern is a compiled LIST pattern: literal runs and the wildcards "*"
// (anything) and "%" (anything but the delimiter) (RFC 9051 §6.3.9).
type pattern struct {
	toks []string // literal text, or "*" / "%" as single tokens
	wild []bool
}

func compilePattern(s string) (*pattern, error) {
	if len(s) > maxPatternLength {
		return nil, errBad("Pattern too long")
	}
	// INBOX is case-insensitive: normalise a leading "inbox" level.
	if len(s) >= 5 && strings.EqualFold(s[:5], "INBOX") && (len(s) == 5 || s[5] == '/' || s[5] == '*' || s[5] == '%') {
		s = "INBOX" + s[5:]
	}
	p := &pattern{}
	nw := 0
	for i := 0; i < len(s); {
		if s[i] == '*' || s[i] == '%' {
			w := string(s[i])
			// Runs of wildcards collapse; "*" wins over "%".
			for i < len(s) && (s[i] == '*' || s[i] == '%') {
				if s[i] == '*' {
					w = "*"
				}
				i++
			}
			nw++
			if nw > maxWildcards {
				return nil, errBad("Too many wildcards in pattern")
			}
			p.toks, p.wild = append(p.toks, w), append(p.wild, true)
			continue
		}
		j := i
		for j < len(s) && s[j] != '*' && s[j] != '%' {
			j++
		}
		p.toks, p.wild = append(p.toks, s[i:j]), append(p.wild, false)
		i = j
	}
	return p, nil
}

// match runs in O(tokens × len(name)) time: reach[j] says whether the
// tokens so far can consume name[:j].
func (p *pattern) match(name string) bool {
	reach := make([]bool, len(name)+1)
	next := make([]bool, len(name)+1)
	reach[0] = true
	for t, tok := range p.toks {
		clear(next)
		switch {
		case p.wild[t] && tok == "*":
			on := false
			for j := range reach {
				on = on || reach[j]
				next[j] = on
			}
		case p.wild[t]:
			on := false
			for j := range reach {
				if j > 0 && name[j-1] == '/' {
					on = false
				}
				on = on || reach[j]
				next[j] = on
			}
		default:
			for j := range reach {
				if reach[j] && strings.HasPrefix(name[j:], tok) {
					next[j+len(tok)] = true
				}
			}
		}
		reach, next = next, reach
	}
	return reach[len(name)]
}
