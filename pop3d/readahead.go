package pop3d

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"slices"

	"github.com/postrider/postrider/mailstore"
)

// Read-ahead (issue 12). POP3 clients download in order, most of them
// pipelining every RETR (RFC 2449 §6.6). Reading one message per store
// round trip made a download of 3,000 messages of ~10 KB cost 3,000
// statements, each with its round trip, pool acquire and decode, and left
// Postrider at a third of Dovecot's rate. RETR n now reads message n and
// the next ones in one store call (mailstore.Messages.ReadMessages) and
// serves the following RETRs from memory; while a client downloads in
// order, the batch after the one being sent is read in the background, so
// the database works while the client reads.
const (
	// aheadMessages bounds the messages of one read.
	aheadMessages = 64
	// aheadBytes bounds the octets of one read, into one pooled buffer
	// (see aheadbudget.go). A session holds at most two: the batch being
	// sent and the next.
	aheadBytes = aheadMinBytes << (aheadClasses - 1)
	// aheadMaxMessage: larger messages are never read ahead; RETR streams
	// them from the store in bounded chunks (OpenMessage) as before.
	aheadMaxMessage = 256 << 10
	// aheadStart is the first window of a client that does not pipeline:
	// the message and the next (what a one-message prefetch gave). Each
	// read that follows the previous one in order doubles the window up to
	// aheadMessages, so a client that fetches one message and quits makes
	// the store read one more, and a lock-step download soon reads 64 at
	// a time; from then on the next batch is read in the background.
	aheadStart = 2
)

// aheadEntry is one message number of the read-ahead: its octets (Whole),
// Gone when the store no longer had it at the read, or neither when RETR
// streams it (too large to hold, or left out by the store).
type aheadEntry struct {
	n      int  // message number
	stream bool // too large to read ahead
	mailstore.MessageOctets
}

// batch is one read: the maildrop's messages [from, end) that are not
// deleted, in at most aheadBytes.
type batch struct {
	from, end int
	ents      []aheadEntry // ascending message numbers
	uids      []uint32     // the UIDs read (not the streamed ones)
	budget    *aheadBudget
	class     int     // size class of buf and of the reservation
	buf       *[]byte // pooled; holds the entries' data; nil: nothing reserved
	done      chan struct{}
	cancel    context.CancelFunc
	err       error
}

// find returns the entry of message n, or nil.
func (b *batch) find(n int) *aheadEntry {
	if b == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(b.ents, n, func(e aheadEntry, n int) int { return cmp.Compare(e.n, n) })
	if !ok {
		return nil
	}
	return &b.ents[i]
}

// read reads the batch's messages from the store into its entries.
func (b *batch) read(ctx context.Context, st Store, accountID, mailboxID int64) error {
	if len(b.uids) == 0 {
		return nil
	}
	got, err := st.ReadMessages(ctx, accountID, mailboxID, b.uids, int64(cap(*b.buf)), (*b.buf)[:0])
	if err != nil {
		return err
	}
	k := 0
	for j := range b.ents {
		if e := &b.ents[j]; !e.stream {
			if k >= len(got) || got[k].UID != e.UID {
				return errors.New("read ahead: the store answered for other messages than asked")
			}
			e.MessageOctets = got[k]
			k++
		}
	}
	return nil
}

// release waits for a background read and returns the buffer to the pool.
func (b *batch) release() {
	if b == nil {
		return
	}
	if b.done != nil {
		b.cancel()
		<-b.done
	}
	clear(b.ents) // no references into the buffer survive
	if b.buf != nil {
		putAheadBuf(b.class, b.buf)
		b.budget.release(b.class)
		b.buf = nil
	}
}

// readahead holds whole messages read for the RETRs to come: the batch
// being sent and the next one. Any change notified for the account drops
// both, so a message expunged by another session (IMAP, or POP3 on another
// node) is not served from them once the notification has arrived: RETR
// then reads the store again and answers "-ERR ... removed" as it always
// did.
type readahead struct {
	cur     *batch // being sent; nil once its last message went out
	next    *batch // messages [cur.end, next.end), read in the background
	end     int    // end of the last batch read: RETR end is in order
	last    int    // the last message number RETR asked for
	window  int    // messages to read next time
	changes <-chan struct{}
	cancel  func()
}

// drop releases both batches.
func (ra *readahead) drop() {
	ra.cur.release()
	ra.next.release()
	ra.cur, ra.next = nil, nil
}

// stop releases everything and ends the change subscription.
func (ra *readahead) stop() {
	ra.drop()
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

// sent tells the read-ahead that RETR sent message n whole: after the
// batch's last message its buffer goes back to the pool.
func (ra *readahead) sent(n int) {
	if c := ra.cur; c != nil && len(c.ents) > 0 && c.ents[len(c.ents)-1].n == n {
		c.release()
		ra.cur = nil
	}
}

// ahead returns the read-ahead entry of message n. When there is none and
// fill is set (RETR), it reads message n and the next ones of the
// maildrop first (or takes the batch read in the background for them). It
// returns nil when there is none.
func (s *session) ahead(n int, fill bool) (*aheadEntry, error) {
	ra := &s.ra
	if ra.changed() {
		ra.drop()
	}
	// In order: the message after the last batch, or after the last RETR
	// (a change notified in the middle of a batch dropped it).
	inOrder := n == ra.end || n == ra.last+1
	if fill {
		ra.last = n
	}
	if e := ra.cur.find(n); e != nil || !fill {
		return e, nil
	}
	if nb := ra.next; nb != nil && n == nb.from {
		ra.next = nil
		<-nb.done
		nb.cancel()
		nb.done = nil
		ra.cur.release()
		ra.cur = nil
		if nb.err != nil {
			nb.release()
			return nil, nb.err
		}
		ra.cur, ra.end = nb, nb.end
	} else {
		ra.drop()
		if inOrder && ra.window > 0 {
			ra.window = min(2*ra.window, aheadMessages)
		} else {
			ra.window = aheadStart
		}
		ra.window = max(ra.window, min(s.pipelinedRetrs()+1, aheadMessages))
		ra.changed() // a change notified before the read is seen by it
		b := s.plan(n, true)
		if err := b.read(s.ctx, s.srv.store, s.acc.ID, s.md.box.ID); err != nil {
			b.release()
			return nil, err
		}
		ra.cur, ra.end = b, b.end
	}
	if ra.window == aheadMessages && ra.end <= len(s.md.msgs) {
		s.readNext()
	}
	s.growWriter()
	return ra.cur.find(n), nil
}

// plan lays out the batch of messages from number n on: at most
// ra.window messages that are not deleted, whose octets fit in a buffer
// reserved from the server's read-ahead budget (see reserve: must is set
// for a read RETR waits for). It returns nil when the budget has no room
// for a read that can wait.
func (s *session) plan(n int, must bool) *batch {
	b, total := s.layout(n, aheadBytes)
	if len(b.uids) == 0 {
		return b
	}
	c, ok := s.srv.ahead.reserve(total, must)
	if !ok {
		return nil
	}
	if size := int64(aheadMinBytes) << c; size < total {
		// Less than asked for: fewer messages (none when message n is
		// larger than the buffer: RETR streams it).
		if b, _ = s.layout(n, size); len(b.uids) == 0 {
			s.srv.ahead.release(c)
			return b
		}
	}
	b.budget, b.class, b.buf = &s.srv.ahead, c, aheadBuf(c)
	return b
}

// layout lays out the batch from message n on within limit octets and
// returns it with its octets.
func (s *session) layout(n int, limit int64) (*batch, int64) {
	b := &batch{from: n}
	var total int64
	count := 0
	i := n - 1
	for ; i < len(s.md.msgs) && count < s.ra.window; i++ {
		m := &s.md.msgs[i]
		if m.deleted || m.gone {
			continue
		}
		e := aheadEntry{n: i + 1, MessageOctets: mailstore.MessageOctets{UID: m.uid}}
		if m.raw > aheadMaxMessage {
			e.stream = true
		} else {
			if total+m.raw > limit {
				break
			}
			total += m.raw
			b.uids = append(b.uids, m.uid)
		}
		count++
		b.ents = append(b.ents, e)
	}
	b.end = i + 1 // message numbers are 1-based: i is the next index
	return b, total
}

// readNext starts reading, in the background, the batch that follows the
// current one.
func (s *session) readNext() {
	b := s.plan(s.ra.end, false)
	if b == nil || len(b.ents) == 0 {
		return // nothing left, or no memory to spare: RETR reads it
	}
	ctx, cancel := context.WithCancel(s.ctx)
	b.done, b.cancel = make(chan struct{}), cancel
	st, acc, box := s.srv.store, s.acc.ID, s.md.box.ID
	go func() {
		defer close(b.done)
		b.err = b.read(ctx, st, acc, box)
	}()
	s.ra.next = b
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
