package imapd

import (
	"cmp"
	"slices"
)

// container is a node of the REFERENCES algorithm: a message (msg is its
// index) or a dummy (msg -1) that only its Message ID names. Siblings are
// a doubly linked list, so that a link is broken in constant time.
type container struct {
	msg                       int32
	parent, child, prev, next int32 // -1: none
	children                  []int32
	sortMsg                   int32 // the message the node sorts by (RFC 5256 §4 steps 4, 6)
}

// refThreader runs RFC 5256 §4 REFERENCES over messages in ascending
// sequence order.
type refThreader struct {
	msgs []threadMsg
	c    []container
	ids  map[string]int32
}

func (t *refThreader) newContainer(msg int32) int32 {
	t.c = append(t.c, container{msg: msg, parent: -1, child: -1, prev: -1, next: -1})
	return int32(len(t.c) - 1)
}

// byID finds or creates (as a dummy) the container of a Message ID.
func (t *refThreader) byID(id string) int32 {
	if ci, ok := t.ids[id]; ok {
		return ci
	}
	ci := t.newContainer(-1)
	t.ids[id] = ci
	return ci
}

// descends reports whether a is b or one of b's descendants.
func (t *refThreader) descends(a, b int32) bool {
	for x := a; x >= 0; x = t.c[x].parent {
		if x == b {
			return true
		}
	}
	return false
}

// link makes p the parent of ch (ch has none).
func (t *refThreader) link(p, ch int32) {
	c := &t.c[ch]
	c.parent, c.prev, c.next = p, -1, t.c[p].child
	if c.next >= 0 {
		t.c[c.next].prev = ch
	}
	t.c[p].child = ch
}

// unlink breaks the link between ch and its parent.
func (t *refThreader) unlink(ch int32) {
	c := &t.c[ch]
	if c.prev >= 0 {
		t.c[c.prev].next = c.next
	} else if c.parent >= 0 {
		t.c[c.parent].child = c.next
	}
	if c.next >= 0 {
		t.c[c.next].prev = c.prev
	}
	c.parent, c.prev, c.next = -1, -1, -1
}

// threadReferences threads messages by their references (RFC 5256 §4
// REFERENCES).
func threadReferences(msgs []threadMsg) []*threadNode {
	t := &refThreader{msgs: msgs, ids: make(map[string]int32, len(msgs))}
	// Step 1: link messages to their references.
	for i := range msgs {
		m := &msgs[i]
		var cur int32
		if ci, ok := t.ids[m.id]; ok && m.id != "" && t.c[ci].msg < 0 {
			cur = ci // a dummy so far: this message fills it
			t.c[ci].msg = int32(i)
		} else {
			// No Message ID, or a duplicate of an earlier message's: a
			// unique ID of its own (RFC 5256 §4 step 1.A).
			cur = t.newContainer(int32(i))
			if m.id != "" && !ok {
				t.ids[m.id] = cur
			}
		}
		// Step 1.A: each reference is the parent of the next one, unless
		// that one has a parent already or the link would make a loop.
		prev := int32(-1)
		for _, r := range m.refs {
			rc := t.byID(r)
			if prev >= 0 && t.c[rc].parent < 0 && !t.descends(prev, rc) {
				t.link(prev, rc)
			}
			prev = rc
		}
		// Step 1.B: the last reference is the message's parent, replacing
		// any parent it had, unless that would make a loop.
		if t.c[cur].parent >= 0 {
			t.unlink(cur)
		}
		if prev >= 0 && !t.descends(prev, cur) {
			t.link(prev, cur)
		}
	}
	// Convert to child slices (in link order) for the later steps.
	var roots []int32
	for ci := range t.c {
		c := &t.c[ci]
		if c.parent < 0 {
			roots = append(roots, int32(ci)) // step 2: the root set
		}
		for ch := c.child; ch >= 0; ch = t.c[ch].next {
			c.children = append(c.children, ch)
		}
	}
	roots = t.prune(roots)
	// Step 4: sort the root set by sent date, a dummy by its first child.
	for _, r := range roots {
		if t.c[r].msg < 0 {
			t.sortSiblings(t.c[r].children)
		}
	}
	t.sortSiblings(roots)
	roots = t.mergeSubjects(roots)
	// Step 6: sort every set of siblings, the deepest first.
	order := t.preorder(roots)
	for k := len(order) - 1; k >= 0; k-- {
		t.sortSiblings(t.c[order[k]].children)
	}
	t.sortSiblings(roots)
	return t.nodes(roots)
}

// preorder lists the nodes under roots, each before its descendants.
func (t *refThreader) preorder(roots []int32) []int32 {
	var order []int32
	stack := slices.Clone(roots)
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		order = append(order, n)
		stack = append(stack, t.c[n].children...)
	}
	return order
}

// prune removes dummies (RFC 5256 §4 step 3): one without children goes;
// one with children is replaced by them, except at the root level, where
// it stays unless it has only one child.
func (t *refThreader) prune(roots []int32) []int32 {
	order := t.preorder(roots)
	for k := len(order) - 1; k >= 0; k-- { // children before parents
		c := &t.c[order[k]]
		var kept []int32
		for _, ch := range c.children {
			if t.c[ch].msg >= 0 {
				kept = append(kept, ch)
				continue
			}
			kept = append(kept, t.c[ch].children...) // already pruned
		}
		c.children = kept
	}
	var out []int32
	for _, r := range roots {
		c := &t.c[r]
		switch {
		case c.msg >= 0 || len(c.children) > 1:
			out = append(out, r)
		case len(c.children) == 1:
			out = append(out, c.children[0])
		}
	}
	return out
}

// sortKey is the message a node sorts by: its own, or a dummy's first
// child's.
func (t *refThreader) sortKey(n int32) int32 {
	for t.c[n].msg < 0 && len(t.c[n].children) > 0 {
		n = t.c[n].children[0]
	}
	return t.c[n].msg
}

// sortSiblings sorts nodes by sent date, then sequence (RFC 5256 §2.2).
func (t *refThreader) sortSiblings(nodes []int32) {
	if len(nodes) < 2 {
		return
	}
	for _, n := range nodes {
		t.c[n].sortMsg = t.sortKey(n)
	}
	slices.SortStableFunc(nodes, func(a, b int32) int {
		ma, mb := t.c[a].sortMsg, t.c[b].sortMsg
		if ma < 0 || mb < 0 {
			return cmp.Compare(mb, ma) // an empty dummy (none is left) last
		}
		return compareSent(t.msgs, int(ma), int(mb))
	})
}

// subjectOf is the thread subject of a root: its base subject, or its
// first child's for a dummy (RFC 5256 §4 step 5.B).
func (t *refThreader) subjectOf(r int32) (string, bool) {
	m := t.sortKey(r)
	if m < 0 {
		return "", false
	}
	return t.msgs[m].subject, true
}

// mergeSubjects gathers the roots whose threads have the same base
// subject (RFC 5256 §4 step 5).
func (t *refThreader) mergeSubjects(roots []int32) []int32 {
	table := map[string]int32{}
	isReply := func(n int32) bool { return t.c[n].msg >= 0 && t.msgs[t.c[n].msg].reply }
	dummy := func(n int32) bool { return t.c[n].msg < 0 }
	// Step 5.B: the subject table.
	for _, r := range roots {
		subj, ok := t.subjectOf(r)
		if !ok || subj == "" {
			continue
		}
		old, found := table[subj]
		if !found || !dummy(old) && (dummy(r) || isReply(old) && !isReply(r)) {
			table[subj] = r
		}
	}
	// Step 5.C: merge each root with the one in the table.
	removed := map[int32]bool{}
	replaced := map[int32]int32{} // a root whose place a new dummy takes
	for _, r := range roots {
		subj, ok := t.subjectOf(r)
		if !ok || subj == "" {
			continue
		}
		old := table[subj]
		if old == r {
			continue
		}
		switch {
		case dummy(old) && dummy(r):
			t.c[old].children = append(t.c[old].children, t.c[r].children...)
			removed[r] = true
		case dummy(old) || isReply(r) && !isReply(old):
			t.c[old].children = append(t.c[old].children, r)
			removed[r] = true
		default:
			d := t.newContainer(-1)
			t.c[d].children = []int32{old, r}
			table[subj] = d
			removed[r] = true
			replaced[old] = d // old is a root of its own: a dummy never gets here
		}
	}
	var out []int32
	for _, r := range roots {
		if removed[r] {
			continue
		}
		if d, ok := replaced[r]; ok {
			r = d
		}
		out = append(out, r)
	}
	return out
}

// nodes builds the output tree.
func (t *refThreader) nodes(roots []int32) []*threadNode {
	made := make(map[int32]*threadNode, len(t.c))
	node := func(n int32) *threadNode {
		tn := &threadNode{}
		if m := t.c[n].msg; m >= 0 {
			tn.num = t.msgs[m].num
		}
		made[n] = tn
		return tn
	}
	out := make([]*threadNode, len(roots))
	for i, r := range roots {
		out[i] = node(r)
	}
	for _, n := range t.preorder(roots) {
		parent := made[n]
		for _, ch := range t.c[n].children {
			parent.children = append(parent.children, node(ch))
		}
	}
	return out
}
