package postgres

import (
	"container/list"
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// Listing every message of a large mailbox costs PostgreSQL about 0.3–0.5
// µs per row to produce and send however the query is written (measured
// 48–70 ms for 100,000 messages on a busy 2-core server, see listRows),
// too slow for IMAP SELECT. So this
// node keeps the message lists of large mailboxes in memory, each with the
// HIGHESTMODSEQ it reflects, and brings a hit up to date with one Changes
// query (pr_changes: a primary-key range for new messages, the partial
// index messages_changed for changed ones and the tombstones make that
// cheap).
// Every change to a mailbox's messages raises its modseq, new messages get
// new UIDs and expunges leave tombstones, so an updated entry is exactly
// what a full query would return: the cache is never stale, and other
// nodes' writes need no invalidation.

const (
	// DefaultListCacheMessages bounds the messages cached per Store (48
	// bytes each, plus their keywords) when Options.ListCacheMessages is 0.
	DefaultListCacheMessages = 500_000
	// listCacheMin is the smallest mailbox worth caching: smaller ones are
	// listed from the database in about a millisecond.
	listCacheMin = 2000
)

type listCache struct {
	mu      sync.Mutex
	limit   int
	total   int
	entries map[int64]*listEntry
	lru     list.List // of *listEntry, most recently used first
}

type listEntry struct {
	mailbox, account int64
	elem             *list.Element // nil once evicted

	mu   sync.Mutex // serialises refreshes and reads of msgs
	hms  uint64
	msgs []cmeta             // ascending UID
	kws  map[uint32][]string // keywords of the messages that have some
	size int                 // len(msgs) as counted in listCache.total
}

// cmeta is a cached MessageMeta without pointers (48 bytes): the garbage
// collector neither scans nor write-barriers a cached list, and copying
// out is a tight loop.
type cmeta struct {
	uid      uint32
	flags    uint8
	hasKw    bool
	modseq   uint64
	date     int64 // Unix microseconds (PostgreSQL's precision)
	size     int64
	crlfSize int64
	content  int64
}

func (e *listEntry) set(i int, m mailstore.MessageMeta) {
	e.msgs[i] = cmeta{uid: m.UID, flags: uint8(m.Flags.System), hasKw: len(m.Flags.Keywords) > 0,
		modseq: m.ModSeq, date: m.InternalDate.UnixMicro(), size: m.Size, crlfSize: m.CRLFSize, content: m.ContentID}
	if len(m.Flags.Keywords) > 0 {
		e.kws[m.UID] = slices.Clone(m.Flags.Keywords)
	} else {
		delete(e.kws, m.UID)
	}
}

func newListEntry(mailbox, account int64, hms uint64, msgs []mailstore.MessageMeta) *listEntry {
	e := &listEntry{mailbox: mailbox, account: account, hms: hms, msgs: make([]cmeta, len(msgs)),
		kws: map[uint32][]string{}, size: len(msgs)}
	for i, m := range msgs {
		e.set(i, m)
	}
	return e
}

func newListCache(limit int) *listCache {
	if limit < listCacheMin {
		return nil
	}
	return &listCache{limit: limit, entries: map[int64]*listEntry{}}
}

func (c *listCache) get(mailbox int64) *listEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[mailbox]
	if e != nil {
		c.lru.MoveToFront(e.elem)
	}
	return e
}

// put adds a mailbox's list.
func (c *listCache) put(mailbox, account int64, hms uint64, msgs []mailstore.MessageMeta) {
	if len(msgs) > c.limit {
		return
	}
	e := newListEntry(mailbox, account, hms, msgs)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.entries[mailbox]; old != nil {
		c.removeLocked(old)
	}
	e.elem = c.lru.PushFront(e)
	c.entries[mailbox] = e
	c.total += e.size
	c.evictLocked()
}

func (c *listCache) remove(e *listEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(e)
}

func (c *listCache) removeLocked(e *listEntry) {
	if e.elem == nil {
		return
	}
	c.lru.Remove(e.elem)
	e.elem = nil
	delete(c.entries, e.mailbox)
	c.total -= e.size
}

// resize records an entry's new length after a refresh.
func (c *listCache) resize(e *listEntry, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.elem == nil {
		return
	}
	c.total += n - e.size
	e.size = n
	c.evictLocked()
}

func (c *listCache) evictLocked() {
	for c.total > c.limit && c.lru.Len() > 0 {
		c.removeLocked(c.lru.Back().Value.(*listEntry))
	}
}

// cachedList serves ListMessages from a cache entry brought up to date,
// with the HIGHESTMODSEQ the list reflects.
func (s *Store) cachedList(ctx context.Context, e *listEntry, starts, stops []int64) (uint64, []mailstore.MessageMeta, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch, err := s.Changes(ctx, e.account, e.mailbox, e.hms)
	if err != nil {
		if errors.Is(err, mailstore.ErrNoSuchMailbox) {
			s.lists.remove(e)
		}
		return 0, nil, err
	}
	if ch.VanishedIncomplete {
		// Tombstones this entry needed were pruned: it cannot be brought up
		// to date. Drop it and list afresh (cached again when whole).
		s.lists.remove(e)
		hms, ms, err := s.listRows(ctx, e.account, e.mailbox, starts, stops)
		if err == nil && starts == nil && len(ms) >= listCacheMin {
			s.lists.put(e.mailbox, e.account, hms, ms)
		}
		return hms, ms, err
	}
	if len(ch.Updated) > 0 || len(ch.Vanished) > 0 {
		e.apply(ch)
		s.lists.resize(e, len(e.msgs))
	}
	e.hms = ch.HighestModSeq
	return e.hms, e.selectMetas(starts, stops), nil
}

// apply merges Changes into the entry's list (ascending by UID).
func (e *listEntry) apply(ch mailstore.Changes) {
	if len(ch.Vanished) > 0 {
		gone := ch.Vanished // ascending
		e.msgs = slices.DeleteFunc(e.msgs, func(m cmeta) bool {
			_, found := slices.BinarySearch(gone, m.uid)
			if found {
				delete(e.kws, m.uid)
			}
			return found
		})
	}
	unsorted := false
	for _, u := range ch.Updated {
		i, found := slices.BinarySearchFunc(e.msgs, u.UID, func(m cmeta, uid uint32) int {
			return int(int64(m.uid) - int64(uid))
		})
		if !found {
			// A new message (always above the others in practice).
			unsorted = unsorted || i < len(e.msgs)
			e.msgs = append(e.msgs, cmeta{})
			i = len(e.msgs) - 1
		}
		e.set(i, u)
	}
	if unsorted {
		slices.SortFunc(e.msgs, func(a, b cmeta) int { return int(int64(a.uid) - int64(b.uid)) })
	}
}

// selectMetas returns the cached messages in the ranges (all when starts
// is nil) as fresh MessageMeta values the caller may modify.
func (e *listEntry) selectMetas(starts, stops []int64) []mailstore.MessageMeta {
	if starts == nil {
		out := make([]mailstore.MessageMeta, len(e.msgs))
		for i := range e.msgs {
			e.meta(&out[i], &e.msgs[i])
		}
		return out
	}
	var out []mailstore.MessageMeta
	for r := range starts {
		i := sort.Search(len(e.msgs), func(i int) bool { return int64(e.msgs[i].uid) >= starts[r] })
		for ; i < len(e.msgs) && int64(e.msgs[i].uid) <= stops[r]; i++ {
			out = append(out, mailstore.MessageMeta{})
			e.meta(&out[len(out)-1], &e.msgs[i])
		}
	}
	return out
}

func (e *listEntry) meta(m *mailstore.MessageMeta, c *cmeta) {
	m.UID = c.uid
	m.ModSeq = c.modseq
	m.Flags.System = mailstore.SystemFlag(c.flags)
	m.InternalDate = time.UnixMicro(c.date)
	m.Size = c.size
	m.CRLFSize = c.crlfSize
	m.ContentID = c.content
	if c.hasKw {
		m.Flags.Keywords = slices.Clone(e.kws[c.uid])
	}
}
