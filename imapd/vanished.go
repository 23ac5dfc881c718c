package imapd

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// The store keeps tombstones of expunged messages only for a retention
// period (mailstore.Store.PruneTombstones). When a client's mod-sequence is
// older than the oldest kept tombstone, Changes reports VanishedIncomplete
// and the expunged UIDs are found by comparing what the client may know
// with the messages that exist. RFC 7162 §4.1 allows a server that does not
// remember the mod-sequences of expunged messages to report every expunged
// UID of the requested set.

// liveUIDs returns the UIDs of the selected mailbox's messages, ascending.
func (c *conn) liveUIDs() ([]uint32, error) {
	ms, err := c.srv.store.ListMessages(c.ctx, c.acct.ID, c.sel.mbox.ID, nil)
	if err != nil {
		return nil, err
	}
	out := make([]uint32, len(ms))
	for i, m := range ms {
		out[i] = m.UID
	}
	return out, nil
}

// absentUIDs formats as a sequence set the UIDs of set ("*" meaning top)
// that are at most top and not in live (ascending): the UIDs a VANISHED
// (EARLIER) response reports when the tombstones do not reach back far
// enough. Its size is bounded by the ranges of set plus the live UIDs.
func absentUIDs(set numSet, top uint32, live []uint32) string {
	rs := make([]numRange, 0, len(set.ranges))
	for _, r := range set.ranges {
		a, b := r.bounds(top)
		if a == 0 {
			a = 1
		}
		if b > top {
			b = top
		}
		if a <= b {
			rs = append(rs, numRange{a, b})
		}
	}
	slices.SortFunc(rs, func(x, y numRange) int { return cmp.Compare(x.start, y.start) })
	var b strings.Builder
	emit := func(lo, hi uint32) {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(lo), 10))
		if hi > lo {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(hi), 10))
		}
	}
	next := uint32(1) // UIDs below next are done (merges overlapping ranges)
	for _, r := range rs {
		lo := max(r.start, next)
		if lo > r.stop {
			continue
		}
		i, _ := slices.BinarySearch(live, lo)
		for lo <= r.stop {
			if i < len(live) && live[i] <= r.stop {
				if live[i] > lo {
					emit(lo, live[i]-1)
				}
				if live[i] == ^uint32(0) {
					break // the top UID: nothing above it
				}
				lo = live[i] + 1
				i++
				continue
			}
			emit(lo, r.stop)
			break
		}
		if r.stop == ^uint32(0) {
			break
		}
		next = r.stop + 1
	}
	return b.String()
}
