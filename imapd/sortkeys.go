package imapd

import (
	"bytes"
	"io"
	"strings"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/msgparse"
)

// Memory of SORT and THREAD: the keys of every message the search
// matched are held at once (they must all be compared), and nothing
// else: contents are read FetchBatch messages at a time (the parse
// results the store keeps per content, through its content cache, which
// bounds itself) and only the keys are copied out of them.
//
//   - SORT: per message a sortKeys (128 octets) plus each string key the
//     criteria use, at most maxSortKeyBytes (256) each: at most
//     N × (128 + 256 × the string keys used) octets, 166 MB for 100,000
//     messages sorted by all six string keys at their longest; 100,000
//     messages sorted by SUBJECT with subjects of 40 octets take 17 MB.
//   - THREAD: per message a threadMsg (80 octets), a container (56), its
//     base subject (at most 256) and Message-ID (at most maxMsgIDBytes,
//     250), and references: at most maxThreadRefs (64) per message and
//     maxThreadRefBytes (16 MiB) for the command, past which a message
//     keeps only its parent. At most N × 640 octets + 16 MiB + N × 250:
//     105 MB for 100,000 messages at their worst, some 30 MB typically.

// eachContent calls fn with the stored content of each of uids (view
// UIDs), in order, reading FetchBatch contents at a time. The content's
// Parsed is nil when the message was expunged meanwhile and its content
// is not at hand.
func (c *conn) eachContent(uids []uint32, fn func(k int, mc *mailstore.MessageContent) error) error {
	s := c.sel
	batch := c.srv.limits.FetchBatch
	refs := make([]mailstore.ContentRef, 0, min(batch, len(uids)))
	for start := 0; start < len(uids); start += batch {
		end := min(start+batch, len(uids))
		refs = refs[:0]
		for _, u := range uids[start:end] {
			var id int64
			if i, ok := s.index(u); ok {
				id = s.msgs[i].content
			}
			refs = append(refs, mailstore.ContentRef{UID: u, ContentID: id})
		}
		cs, err := c.srv.store.MessageContents(c.ctx, c.acct.ID, s.mbox.ID, refs)
		if err != nil {
			return err
		}
		for k := range cs {
			if cs[k].Parsed != nil && refs[k].ContentID == 0 {
				if i, ok := s.index(refs[k].UID); ok {
					s.msgs[i].content = cs[k].ContentID // learnt now
				}
			}
			if err := fn(start+k, &cs[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadSortKeys reads the keys of messages (view UIDs, ascending) that the
// criteria use.
func (c *conn) loadSortKeys(uids []uint32, crit []sortCriterion) ([]sortKeys, error) {
	s := c.sel
	keys := make([]sortKeys, len(uids))
	for k, u := range uids {
		i, _ := s.index(u)
		m := &s.msgs[i]
		keys[k] = sortKeys{uid: u, seq: uint32(i + 1), arrival: m.date, size: m.size, sent: m.date}
	}
	if !needsContent(crit) {
		return keys, nil
	}
	var used [numStringKeys]bool
	for _, sc := range crit {
		if sc.kind >= sortCc {
			used[sc.kind-sortCc] = true
		}
	}
	err := c.eachContent(uids, func(k int, mc *mailstore.MessageContent) error {
		pm := mc.Parsed
		if pm == nil {
			return nil // gone: empty strings, INTERNALDATE as sent date
		}
		sk := &keys[k]
		if !pm.Date.IsZero() {
			sk.sent = pm.Date.UnixMicro() // RFC 5256 §2.2
		}
		env := &pm.Envelope
		for j, ok := range used {
			if !ok {
				continue
			}
			var v string
			switch sortCc + sortKind(j) {
			case sortCc:
				v = firstMailbox(env.Cc) // RFC 5256 §3: addr-mailbox
			case sortFrom:
				v = firstMailbox(env.From)
			case sortTo:
				v = firstMailbox(env.To)
			case sortSubject:
				v, _ = baseSubject(env.Subject) // RFC 5256 §2.1
			case sortDisplayFrom:
				v = displayAddress(env.From) // RFC 5957 §3
			case sortDisplayTo:
				v = displayAddress(env.To)
			}
			sk.str[j] = casemap(v, maxSortKeyBytes)
		}
		return nil
	})
	return keys, err
}

// firstAddress returns the first address of a list as the envelope has
// it, nil if there is none. That may be a group's start marker (RFC 9051
// §7.5.2), whose addr-mailbox is the group's name: RFC 5256 and RFC 5957
// take the first envelope address whatever it is, and so do other
// servers (imaptest's sort-addresses and sort-display-to expect it).
func firstAddress(as []msgparse.Address) *msgparse.Address {
	if len(as) == 0 {
		return nil
	}
	return &as[0]
}

// firstMailbox is the addr-mailbox of the first address, "" if none.
func firstMailbox(as []msgparse.Address) string {
	if a := firstAddress(as); a != nil {
		return a.Mailbox
	}
	return ""
}

// displayAddress is the RFC 5957 §3 sort value of the first address: its
// display name, RFC 2047-decoded, when it has one; else addr-mailbox
// "@" addr-host; else addr-mailbox; else empty.
func displayAddress(as []msgparse.Address) string {
	a := firstAddress(as)
	if a == nil {
		return ""
	}
	if a.Name != "" {
		if n := strings.TrimSpace(msgparse.DecodeHeader(a.Name)); n != "" {
			return n
		}
	}
	if a.Mailbox != "" && a.Host != "" {
		return a.Mailbox + "@" + a.Host
	}
	return a.Mailbox
}

// headerOf returns the top-level header of a stored message: from the
// content's octets when it holds them, else read from the store (at most
// msgparse.MaxHeaderBytes, all the parser examined).
func (c *conn) headerOf(uid uint32, mc *mailstore.MessageContent) ([]byte, error) {
	n := min(mc.Parsed.HeaderSize, msgparse.MaxHeaderBytes)
	if int64(len(mc.Data)) >= n {
		return mc.Data[:n], nil
	}
	r, err := c.srv.store.OpenMessage(c.ctx, c.acct.ID, c.sel.mbox.ID, uid, 0, n)
	if err == mailstore.ErrNoSuchMessage {
		return nil, nil // expunged meanwhile
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, n))
}

// headerField returns the unfolded value of the first field called name
// (lower case) in a raw header block, "" when there is none.
func headerField(hdr []byte, name string) string {
	for len(hdr) > 0 {
		line, rest, _ := bytes.Cut(hdr, []byte{'\n'})
		hdr = rest
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !strings.EqualFold(strings.TrimRight(string(line[:colon]), " \t"), name) {
			continue
		}
		var b strings.Builder
		b.Write(bytes.TrimRight(line[colon+1:], "\r"))
		// Continuation lines start with WSP (RFC 5322 §2.2.3).
		for len(hdr) > 0 && (hdr[0] == ' ' || hdr[0] == '\t') {
			line, rest, _ = bytes.Cut(hdr, []byte{'\n'})
			hdr = rest
			b.Write(bytes.TrimRight(line, "\r"))
		}
		return b.String()
	}
	return ""
}
