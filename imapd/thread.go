package imapd

import (
	"cmp"
	"slices"
	"strings"

	"github.com/postrider/postrider/mailstore"
)

const (
	// maxThreadRefs bounds the references kept per message: the last
	// ones of a longer References field, the nearest ancestors (RFC 5322
	// §3.6.4 lets a writer trim References the same way).
	maxThreadRefs = 64
	// maxThreadRefBytes bounds the references of one THREAD command as a
	// whole: past it, each further message keeps only its last reference,
	// its parent.
	maxThreadRefBytes = 16 << 20
	// maxMsgIDBytes bounds one Message ID; a longer one is not valid.
	maxMsgIDBytes = 250
)

// threadMsg is what threading needs of one message. Messages are given
// in ascending sequence order; their index is the final tie-breaker.
type threadMsg struct {
	num     uint32 // what the response names: sequence number or UID
	sent    int64  // RFC 5256 §2.2 sent date, Unix microseconds
	subject string // base subject, i;ascii-casemap mapped
	reply   bool   // the subject was a reply's or forward's (RFC 5256 §4 step 5)
	id      string // Message ID, "" if none
	refs    []string
}

// threadNode is one node of a thread tree; num 0 is a dummy (a message
// that is referenced but not in the set).
type threadNode struct {
	num      uint32
	children []*threadNode
}

// THREAD and UID THREAD (RFC 5256 §3) with the ORDEREDSUBJECT and
// REFERENCES algorithms (RFC 5256 §4). The store evaluates the search
// keys; dates, subjects, Message-ID and In-Reply-To come from the stored
// parse result, References from the stored header.
func cmdThread(c *conn, cx *cmdCtx) error {
	p := &c.p
	if err := p.sp(); err != nil {
		return err
	}
	alg, err := p.atom()
	if err != nil {
		return errBad("Expected a threading algorithm")
	}
	alg = strings.ToUpper(alg)
	if alg != "REFERENCES" && alg != "ORDEREDSUBJECT" {
		return errBad("Unsupported threading algorithm")
	}
	if err := p.sp(); err != nil {
		return err
	}
	if err := c.searchCharset(); err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	results, _, err := c.searchProgram()
	if err != nil {
		return err
	}
	msgs, err := c.loadThreadMsgs(results, cx.uid, alg == "REFERENCES")
	if err != nil {
		return err
	}
	var threads []*threadNode
	if alg == "REFERENCES" {
		threads = threadReferences(msgs)
	} else {
		threads = threadOrderedSubject(msgs)
	}
	var b strings.Builder
	b.WriteString("* THREAD")
	if len(threads) > 0 {
		b.WriteByte(' ')
	}
	writeThreads(&b, threads)
	c.w.str(b.String())
	c.w.crlf()
	return nil
}

// loadThreadMsgs reads what threading needs of messages (view UIDs,
// ascending); refs only for REFERENCES.
func (c *conn) loadThreadMsgs(uids []uint32, uid, refs bool) ([]threadMsg, error) {
	s := c.sel
	msgs := make([]threadMsg, len(uids))
	for k, u := range uids {
		i, _ := s.index(u)
		msgs[k] = threadMsg{num: uint32(i + 1), sent: s.msgs[i].date}
		if uid {
			msgs[k].num = u
		}
	}
	refBytes := 0
	err := c.eachContent(uids, func(k int, mc *mailstore.MessageContent) error {
		pm := mc.Parsed
		if pm == nil {
			return nil
		}
		m := &msgs[k]
		if !pm.Date.IsZero() {
			m.sent = pm.Date.UnixMicro()
		}
		subj, reply := baseSubject(pm.Envelope.Subject)
		m.subject, m.reply = casemap(subj, maxSortKeyBytes), reply
		if !refs {
			return nil
		}
		if ids := msgIDs(pm.Envelope.MessageID, 1); len(ids) > 0 {
			m.id = ids[0]
		}
		hdr, err := c.headerOf(uids[k], mc)
		if err != nil {
			return err
		}
		// RFC 5256 §4 REFERENCES: the References field's Message IDs;
		// without a valid one, the first valid one of In-Reply-To.
		m.refs = msgIDs(headerField(hdr, "references"), maxThreadRefs)
		if len(m.refs) == 0 {
			m.refs = msgIDs(pm.Envelope.InReplyTo, 1)
		}
		if refBytes > maxThreadRefBytes && len(m.refs) > 1 {
			m.refs = m.refs[len(m.refs)-1:]
		}
		for _, r := range m.refs {
			refBytes += len(r)
		}
		return nil
	})
	return msgs, err
}

// msgIDs returns the valid Message IDs ("<" id-left "@" id-right ">",
// RFC 5322 §3.6.4, with the obsolete forms' CFWS removed) of a field, at
// most limit of them: the last ones when there are more. Comments and
// anything outside angle brackets are skipped.
func msgIDs(v string, limit int) []string {
	var out []string
	for i := 0; i < len(v); {
		switch v[i] {
		case '(':
			i = skipComment(v, i)
			continue
		case '<':
		default:
			i++
			continue
		}
		end := strings.IndexByte(v[i+1:], '>')
		if end < 0 {
			break
		}
		raw := v[i+1 : i+1+end]
		i += end + 2
		id := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, raw)
		at := strings.IndexByte(id, '@')
		if at <= 0 || at == len(id)-1 || len(id) > maxMsgIDBytes || strings.ContainsAny(id, "<(") {
			continue
		}
		out = append(out, strings.Clone(id)) // not the whole field
		if limit == 1 {
			return out // only the first is wanted
		}
		if len(out) > limit {
			out = out[1:]
		}
	}
	return out
}

// skipComment returns the index after the comment starting at v[i]
// (nested, with quoted pairs; RFC 5322 §3.2.2), or len(v) if it is not
// closed.
func skipComment(v string, i int) int {
	depth := 0
	for ; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return len(v)
}

// threadOrderedSubject threads by base subject (RFC 5256 §4
// ORDEREDSUBJECT): messages sorted by base subject, then sent date, are
// split into threads of the same base subject; each thread's first
// message is the parent of the others, and threads are sorted by the
// sent date of their first message.
func threadOrderedSubject(msgs []threadMsg) []*threadNode {
	order := make([]int, len(msgs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if r := strings.Compare(msgs[a].subject, msgs[b].subject); r != 0 {
			return r
		}
		return compareSent(msgs, a, b)
	})
	var threads []*threadNode
	var firsts []int // the first message of each thread
	for k := 0; k < len(order); {
		j := k + 1
		for j < len(order) && msgs[order[j]].subject == msgs[order[k]].subject {
			j++
		}
		root := &threadNode{num: msgs[order[k]].num}
		for _, i := range order[k+1 : j] {
			root.children = append(root.children, &threadNode{num: msgs[i].num})
		}
		threads = append(threads, root)
		firsts = append(firsts, order[k])
		k = j
	}
	idx := make([]int, len(threads))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return compareSent(msgs, firsts[a], firsts[b]) })
	out := make([]*threadNode, len(threads))
	for i, t := range idx {
		out[i] = threads[t]
	}
	return out
}

// compareSent orders messages by sent date, then by sequence (RFC 5256
// §2.2).
func compareSent(msgs []threadMsg, a, b int) int {
	if r := cmp.Compare(msgs[a].sent, msgs[b].sent); r != 0 {
		return r
	}
	return cmp.Compare(a, b)
}

// writeThreads writes thread-list *thread-list (RFC 5256 §5): a message
// with one child is followed by it ("1 2"), one with several by each
// child's subtree in parentheses ("1 (2)(3)"); a dummy parent is written
// as its children's subtrees alone ("((2)(3))").
func writeThreads(b *strings.Builder, threads []*threadNode) {
	for _, t := range threads {
		b.WriteByte('(')
		writeThreadMembers(b, t)
		b.WriteByte(')')
	}
}

// writeThreadMembers writes the members of the thread rooted at n, without
// the enclosing parentheses. Chains of single children are written in a
// loop; recursion is only for branches.
func writeThreadMembers(b *strings.Builder, n *threadNode) {
	first := true
	for {
		if n.num == 0 && len(n.children) == 1 {
			n = n.children[0] // a dummy with one child: the child alone
			continue
		}
		if n.num != 0 {
			if !first {
				b.WriteByte(' ')
			}
			b.WriteString(utoa(uint64(n.num)))
			first = false
		}
		switch len(n.children) {
		case 0:
			return
		case 1:
			n = n.children[0]
			continue
		}
		if !first {
			b.WriteByte(' ')
		}
		writeThreads(b, n.children)
		return
	}
}
