package postgres

import (
	"math"
	"strconv"
	"strings"
)

// The notification payload (notifyChannel) is a comma-separated list of
// entries:
//
//	account ":" mailbox ":" modseq   the mailbox's highest mod-sequence is now modseq
//	account                          any mailbox of the account may have changed
//	"*"                              anything may have changed (a sender dropped entries)
//
// in decimal, without signs. An old node's payload (account IDs only)
// parses as account-level entries.

// maxNotifyPayload bounds one payload, below PostgreSQL's limit of 8000
// bytes.
const maxNotifyPayload = 7000

// maxEntry is the longest entry: three 19-digit numbers and two colons.
const maxEntry = 3*19 + 2

// allChanged is the payload that says anything may have changed.
const allChanged = "*"

// notifyPayloads renders changes as payloads of at most maxNotifyPayload
// bytes.
func notifyPayloads(cs []change) []string {
	var out []string
	buf := make([]byte, 0, min(maxNotifyPayload, 24*len(cs)))
	for _, c := range cs {
		if len(buf) > 0 && len(buf)+1+maxEntry > maxNotifyPayload {
			out = append(out, string(buf))
			buf = buf[:0]
		}
		if len(buf) > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendInt(buf, c.account, 10)
		if c.mailbox != 0 {
			buf = append(buf, ':')
			buf = strconv.AppendInt(buf, c.mailbox, 10)
			buf = append(buf, ':')
			buf = strconv.AppendInt(buf, c.modseq, 10)
		}
	}
	if len(buf) > 0 {
		out = append(out, string(buf))
	}
	return out
}

// parseNotifyPayload calls fn for each entry of a payload and all for a
// "*" entry; it reports false when the payload is malformed (entries
// before the fault have been passed). Account and mailbox IDs are
// positive.
func parseNotifyPayload(payload string, fn func(change), all func()) bool {
	if len(payload) == 0 || len(payload) > 8000 {
		return false
	}
	for {
		entry, rest, more := strings.Cut(payload, ",")
		if entry == allChanged {
			all()
		} else {
			c, ok := parseEntry(entry)
			if !ok {
				return false
			}
			fn(c)
		}
		if !more {
			return true
		}
		payload = rest
	}
}

// parseEntry parses "account" or "account:mailbox:modseq".
func parseEntry(e string) (change, bool) {
	var c change
	a, rest, more := strings.Cut(e, ":")
	var ok bool
	if c.account, ok = parseDecimal(a); !ok || c.account == 0 {
		return c, false
	}
	if !more {
		return c, true
	}
	m, s, more := strings.Cut(rest, ":")
	if !more {
		return c, false
	}
	if c.mailbox, ok = parseDecimal(m); !ok || c.mailbox == 0 {
		return c, false
	}
	if c.modseq, ok = parseDecimal(s); !ok {
		return c, false
	}
	return c, true
}

// parseDecimal parses 1 to 19 decimal digits into a non-negative int64.
func parseDecimal(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 19 {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return 0, false
		}
		v = v*10 + uint64(d)
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}
