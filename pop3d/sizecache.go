package pop3d

import (
	"sort"
	"sync"
)

// Wire sizes.
//
// RFC 1939 §5 (STAT, LIST) requires the exact size of each message as sent
// with CRLF line endings. The store's size is the stored octet count, which
// is the same for messages that arrived by SMTP (always CRLF) but not for a
// message that an IMAP client APPENDed with bare LFs, which RETR sends with
// CRLF (see msgWriter). The store does not record which is which, so pop3d
// computes each message's wire size by streaming it once through msgWriter
// in counting mode, lazily, at the first command that needs sizes.
//
// To avoid rescanning a maildrop at every login, each node remembers what it
// learnt: a message's content never changes while its mailbox keeps its
// UIDVALIDITY, and UIDs only grow. Per (mailbox, UIDVALIDITY) the cache
// keeps a watermark "through" (every UID up to it was scanned, is listed in
// holes, or did not exist when listed — UIDs are allocated in commit order,
// so such a UID never appears later), the messages whose wire size differs
// from their stored size, and the UIDs at or below the watermark that were
// not scanned (messages hidden from POP3, or gone). A login therefore scans
// only mail that arrived since the node last served the maildrop. The cache
// is bounded; evicting an entry only costs a rescan.
//
// If the store ever guarantees CRLF-only storage (or records the wire size),
// this whole mechanism can go; see the package documentation.

// Bounds of the size cache.
const (
	maxCachedMailboxes = 20000
	maxCachedDeltas    = 10000 // messages with a differing size per mailbox
	maxCachedHoles     = 10000 // UID ranges not scanned per mailbox
)

type boxKey struct {
	mailbox     int64
	uidValidity uint32
}

// uidRanges is an ascending list of disjoint inclusive UID ranges.
type uidRanges [][2]uint32

func (r *uidRanges) add(uid uint32) { // uid must exceed every UID in r
	if n := len(*r); n > 0 && (*r)[n-1][1]+1 == uid {
		(*r)[n-1][1] = uid
		return
	}
	*r = append(*r, [2]uint32{uid, uid})
}

func (r uidRanges) contains(uid uint32) bool {
	i := sort.Search(len(r), func(i int) bool { return r[i][1] >= uid })
	return i < len(r) && r[i][0] <= uid
}

type boxSizes struct {
	through uint32
	deltas  map[uint32]int64
	holes   uidRanges
}

type sizeCache struct {
	mu    sync.Mutex
	boxes map[boxKey]*boxSizes
}

func newSizeCache() *sizeCache {
	return &sizeCache{boxes: make(map[boxKey]*boxSizes)}
}

// known fills the wire sizes of the messages the cache knows and returns
// the indexes of those that must be scanned.
func (c *sizeCache) known(k boxKey, msgs []message) (need []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.boxes[k]
	for i := range msgs {
		m := &msgs[i]
		if e == nil || m.uid > e.through || e.holes.contains(m.uid) {
			need = append(need, i)
			continue
		}
		m.size = m.stored + e.deltas[m.uid]
	}
	return need
}

// update records a scan. all are the UIDs of every message in the mailbox
// at login (also the hidden ones), ascending; scanned maps each UID scanned
// now to wireSize-storedSize.
func (c *sizeCache) update(k boxKey, all []uint32, scanned map[uint32]int64) {
	if len(all) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.boxes[k]
	if old == nil {
		old = &boxSizes{}
		if len(c.boxes) >= maxCachedMailboxes {
			for victim := range c.boxes { // an arbitrary entry
				delete(c.boxes, victim)
				break
			}
		}
	}
	e := &boxSizes{through: old.through, deltas: make(map[uint32]int64)}
	for _, uid := range all {
		if d, ok := scanned[uid]; ok {
			if d != 0 {
				e.deltas[uid] = d
			}
			continue
		}
		if uid > old.through || old.holes.contains(uid) {
			e.holes.add(uid)
		} else if d := old.deltas[uid]; d != 0 {
			e.deltas[uid] = d
		}
	}
	if last := all[len(all)-1]; last > e.through {
		e.through = last
	}
	if len(e.deltas) > maxCachedDeltas || len(e.holes) > maxCachedHoles {
		delete(c.boxes, k)
		return
	}
	c.boxes[k] = e
}
