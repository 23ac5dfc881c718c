package postgres

import (
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/msgparse"
)

// The content cache holds, per node, what IMAP FETCH reads of message
// contents: the decoded parse result (envelope, body structure, section
// offsets) and the octets of small messages, or the header of larger ones.
// Under imaptest's FETCH mix this was one query per message for a header
// field section and the JSON decoding of every fetched message's parse
// result (12% of the node's CPU). A content row never changes once
// written and content ids are a bigserial never reused, so an entry is
// never stale and needs no invalidation, on this node or any other: a
// content deleted (its last message expunged) is simply no longer asked
// for, and ages out.
//
// The cache is reached only through MessageContents, whose content ids
// come from the store's own answers about the caller's mailbox (an
// account-checked query); misses are read by UID, joined to the mailbox
// and its account, so a session never gets a content its account does not
// have.

const (
	// DefaultContentCacheBytes bounds the cache when
	// Options.ContentCacheBytes is 0: with imaptest's benchmark load (500
	// distinct messages of 9 KB on average) everything fits many times
	// over; a node serving many users holds their most fetched ones.
	DefaultContentCacheBytes = 64 << 20
	// contentWhole is the largest message kept whole; larger ones keep
	// their header when it is at most this size, and their bodies are
	// streamed from the database as before.
	contentWhole = 64 << 10
	// entryOverhead approximates an entry's bookkeeping (list element,
	// map slot, entry, slice headers).
	entryOverhead = 200
)

type contentCache struct {
	mu      sync.Mutex
	limit   int64
	bytes   int64
	entries map[int64]*list.Element // of *contentEntry
	lru     list.List               // most recently used first

	hits, misses uint64
}

type contentEntry struct {
	c    mailstore.MessageContent
	cost int64
}

func newContentCache(limit int64) *contentCache {
	if limit <= 0 {
		return nil
	}
	return &contentCache{limit: limit, entries: map[int64]*list.Element{}}
}

// get returns a cached content.
func (cc *contentCache) get(id int64) (mailstore.MessageContent, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if e := cc.entries[id]; e != nil {
		cc.lru.MoveToFront(e)
		cc.hits++
		return e.Value.(*contentEntry).c, true
	}
	cc.misses++
	return mailstore.MessageContent{}, false
}

// put adds a content read from the database; parsedLen is the size of its
// JSON parse result, from which the decoded form's memory is estimated.
func (cc *contentCache) put(c mailstore.MessageContent, parsedLen int) {
	cost := int64(len(c.Data)) + 2*int64(parsedLen) + entryOverhead
	if cost > cc.limit/8 {
		return // one entry never takes a large part of the cache
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.entries[c.ContentID] != nil {
		return
	}
	cc.entries[c.ContentID] = cc.lru.PushFront(&contentEntry{c: c, cost: cost})
	cc.bytes += cost
	for cc.bytes > cc.limit {
		e := cc.lru.Back()
		ce := e.Value.(*contentEntry)
		cc.lru.Remove(e)
		delete(cc.entries, ce.c.ContentID)
		cc.bytes -= ce.cost
	}
}

// putFresh adds a content an IMAP APPEND just stored through this node
// (id), from what the delivery had in memory: its parse result and its
// octets (data, the whole message of one chunk; copied). A client that
// appends a message usually fetches it back at once (imaptest does;
// Thunderbird re-reads what it saved to Sent), and with contents no longer
// shared across deliveries (migration 0010) every such FETCH was a miss: a
// query and a JSON decoding. What is kept is what a miss would read
// (contentsSQL): the whole message up to contentWhole, else its header
// when that fits. A nil cache or a content without parse data (queue-only)
// adds nothing.
func (cc *contentCache) putFresh(id int64, c *content, data []byte) {
	if cc == nil || c == nil || c.msg == nil || id == 0 {
		return
	}
	n := int64(0)
	switch {
	case c.size <= contentWhole:
		n = c.size
	case c.headerSize <= contentWhole && c.headerSize <= int64(len(data)):
		n = c.headerSize
	}
	if n > int64(len(data)) {
		return
	}
	mc := mailstore.MessageContent{ContentID: id, Size: c.size, Parsed: c.msg}
	if n > 0 {
		mc.Data = append([]byte(nil), data[:n]...)
	}
	cc.put(mc, len(c.parsed))
}

// ContentCacheStats reports the content cache's lookups that found an
// entry and those that did not, and its size in (estimated) bytes and
// entries.
func (s *Store) ContentCacheStats() (hits, misses uint64, bytes int64, entries int) {
	cc := s.contents
	if cc == nil {
		return 0, 0, 0, 0
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.hits, cc.misses, cc.bytes, len(cc.entries)
}

// contentsSQL reads the contents of messages by UID, joined to the mailbox
// and its account: the parse result, and the octets of the first chunk up
// to the whole message (small ones) or the header (when it is at most $4
// octets and within the first chunk).
const contentsSQL = `
	SELECT m.uid, c.id, c.size, c.parsed, w.n,
	       (SELECT substring(ch.data FROM 1 FOR w.n::int) FROM chunks ch WHERE ch.content_id = c.id AND ch.seq = 0)
	  FROM mailboxes mb
	  JOIN messages m ON m.mailbox_id = mb.id AND m.uid = ANY ($3::bigint[])
	  JOIN contents c ON c.id = m.content_id
	 CROSS JOIN LATERAL (SELECT CASE WHEN c.size <= $4 THEN c.size
	                                 WHEN c.header_size <= $4 AND c.header_size <= c.chunk_size THEN c.header_size
	                                 ELSE 0 END AS n) w
	 WHERE mb.id = $2 AND mb.account_id = $1`

// MessageContents implements mailstore.Store.
func (s *Store) MessageContents(ctx context.Context, accountID, mailboxID int64, refs []mailstore.ContentRef) ([]mailstore.MessageContent, error) {
	out := make([]mailstore.MessageContent, len(refs))
	var missing []int64
	at := map[uint32][]int{} // UID → indexes of refs still missing
	for i, r := range refs {
		if r.ContentID != 0 && s.contents != nil {
			if c, ok := s.contents.get(r.ContentID); ok {
				out[i] = c
				continue
			}
		}
		if at[r.UID] == nil {
			missing = append(missing, int64(r.UID))
		}
		at[r.UID] = append(at[r.UID], i)
	}
	if len(missing) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, contentsSQL, accountID, mailboxID, missing, int64(contentWhole))
	if err != nil {
		return nil, mapErr("message contents", err)
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		var uid, n int64
		var c mailstore.MessageContent
		var parsed, data []byte
		if err := rows.Scan(&uid, &c.ContentID, &c.Size, &parsed, &n, &data); err != nil {
			return nil, mapErr("message contents", err)
		}
		c.Parsed = &msgparse.Message{}
		if len(parsed) > 0 {
			if err := json.Unmarshal(parsed, c.Parsed); err != nil {
				return nil, fmt.Errorf("message contents: decode parsed message %d: %w", uid, err)
			}
		}
		if int64(len(data)) == n && (n > 0 || c.Size == 0) {
			c.Data = data
		}
		if s.contents != nil {
			s.contents.put(c, len(parsed))
		}
		for _, i := range at[uint32(uid)] {
			out[i] = c
		}
		found++
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("message contents", err)
	}
	if found == 0 {
		// Nothing at all: is the mailbox still the account's?
		if err := s.checkMailbox(ctx, accountID, mailboxID); err != nil {
			return nil, err
		}
	}
	return out, nil
}
