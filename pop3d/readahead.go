package pop3d

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"sync"

	"github.com/postrider/postrider/mailstore"
)

// Read-ahead (issue 12). POP3 clients download in order, most of them
// pipelining every RETR (RFC 2449 §6.6). Reading one message per store
// round trip made a download of 3,000 messages of ~10 KB cost 3,000
// statements, each with its round trip, pool acquire and decode, and left
// Postrider at a third of Dovecot's rate. RETR n now reads message n and
// the next ones in one store call (mailstore.Messages.ReadMessages) and
// serves the following RETRs from memory.
const (
	// aheadMessages bounds the messages of one read.
	aheadMessages = 64
	// aheadBytes bounds the octets a session holds ahead: the store reads
	// no more than this in one call, into one pooled buffer.
	aheadBytes = 2 << 20
	// aheadMaxMessage: larger messages are never read ahead; RETR streams
	// them from the store in bounded chunks (OpenMessage) as before.
	aheadMaxMessage = 256 << 10
	// aheadStart is the first window of a client that does not pipeline:
	// the message and the next (what a one-message prefetch gave). Each
	// read that follows the previous one in order doubles the window up to
	// aheadMessages, so a client that fetches one message and quits makes
	// the store read one more, and a lock-step download soon reads 64 at
	// a time.
	aheadStart = 2
)

// aheadPool recycles the buffers read-ahead messages are read into.
var aheadPool = sync.Pool{New: func() any { b := make([]byte, 0, aheadBytes); return &b }}

// aheadEntry is one message number of the read-ahead: its octets (Whole),
// Gone when the store no longer had it at the read, or neither when RETR
// streams it (too large to hold, or left out by the store).
type aheadEntry struct {
	n      int  // message number
	stream bool // too large to read ahead
	mailstore.MessageOctets
}

// readahead holds whole messages read for the RETRs to come. Its data
// is at most aheadBytes, in one pooled buffer, released once the last
// message has been sent. Any change notified for the account drops it, so
// a message expunged by another session (IMAP, or POP3 on another node) is
// not served from it once the notification has arrived: RETR then reads
// the store again and answers "-ERR ... removed" as it always did.
type readahead struct {
	ents    []aheadEntry // ascending message numbers, all in [start, end)
	end     int          // one past the last message number covered
	window  int          // messages to read next time
	buf     *[]byte      // pooled; nil when ents hold no data
	uids    []uint32     // scratch for the store call
	changes <-chan struct{}
	cancel  func()
}

// find returns the entry of message n, or nil.
func (ra *readahead) find(n int) *aheadEntry {
	i, ok := slices.BinarySearchFunc(ra.ents, n, func(e aheadEntry, n int) int { return cmp.Compare(e.n, n) })
	if !ok {
		return nil
	}
	return &ra.ents[i]
}

// release drops the entries and returns the buffer to the pool; the
// window and end stay, to tell a download in order.
func (ra *readahead) release() {
	clear(ra.ents) // no references into the buffer survive
	ra.ents = ra.ents[:0]
	if ra.buf != nil {
		*ra.buf = (*ra.buf)[:0]
		aheadPool.Put(ra.buf)
		ra.buf = nil
	}
}

// stop releases everything and ends the change subscription.
func (ra *readahead) stop() {
	ra.release()
	if ra.cancel != nil {
		ra.cancel()
		ra.cancel, ra.changes = nil, nil
	}
}

// changed reports (and consumes) a change notification for the account.
func (ra *readahead) changed() bool {
	select {
	case <-ra.changes:
		return true
	default:
		return false
	}
}

// ahead returns the read-ahead entry of message n. When there is none and
// fill is set (RETR), it reads message n and the next ones of the
// maildrop in one store call first. It returns nil when there is none.
func (s *session) ahead(n int, fill bool) (*aheadEntry, error) {
	ra := &s.ra
	if ra.changed() {
		ra.release()
	}
	if e := ra.find(n); e != nil || !fill {
		return e, nil
	}
	if n == ra.end && ra.window > 0 {
		ra.window = min(2*ra.window, aheadMessages) // in order: read more
	} else {
		ra.window = aheadStart
	}
	ra.window = max(ra.window, min(s.pipelinedRetrs()+1, aheadMessages))
	ra.release()
	// Any change notified before the read is seen by the read itself.
	ra.changed()

	uids := ra.uids[:0]
	var total int64
	count := 0
	i := n - 1
	for ; i < len(s.md.msgs) && count < ra.window; i++ {
		m := &s.md.msgs[i]
		if m.deleted || m.gone {
			continue
		}
		count++
		e := aheadEntry{n: i + 1, MessageOctets: mailstore.MessageOctets{UID: m.uid}}
		if m.raw > aheadMaxMessage {
			e.stream = true
		} else {
			if total+m.raw > aheadBytes {
				break
			}
			total += m.raw
			uids = append(uids, m.uid)
		}
		ra.ents = append(ra.ents, e)
	}
	ra.end = i
	ra.uids = uids
	if len(uids) == 0 {
		return ra.find(n), nil
	}
	ra.buf = aheadPool.Get().(*[]byte)
	got, err := s.srv.store.ReadMessages(s.ctx, s.acc.ID, s.md.box.ID, uids, aheadBytes, (*ra.buf)[:0])
	if err != nil {
		ra.release()
		ra.end = 0
		return nil, err
	}
	// Fill the entries of the UIDs asked for, in order.
	k := 0
	for j := range ra.ents {
		if e := &ra.ents[j]; !e.stream {
			if k >= len(got) || got[k].UID != e.UID {
				ra.release()
				ra.end = 0
				return nil, fmt.Errorf("read ahead: the store answered for other messages than asked")
			}
			e.MessageOctets = got[k]
			k++
		}
	}
	return ra.find(n), nil
}

// pipelinedRetrs counts the RETR commands already waiting in the input
// buffer (RFC 2449 §6.6): a pipelining client has sent its whole download
// and the first read-ahead can cover it. The buffer holds at most 4 KiB.
func (s *session) pipelinedRetrs() int {
	b, _ := s.r.Peek(s.r.Buffered())
	n := 0
	for len(b) > 0 {
		if len(b) > 5 && b[0]|0x20 == 'r' && b[1]|0x20 == 'e' && b[2]|0x20 == 't' && b[3]|0x20 == 'r' && b[4] == ' ' {
			n++
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		b = b[i+1:]
	}
	return n
}
