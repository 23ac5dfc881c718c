package imapd

import (
	"slices"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// vmsg is one message of a session's view: everything FETCH answers from
// memory (UID, FLAGS, INTERNALDATE, RFC822.SIZE, MODSEQ) and the id of its
// content, without pointers (48 bytes), so that the garbage collector
// neither scans nor write-barriers a view of many messages. Keywords,
// which few messages have, live in selected.kws.
type vmsg struct {
	uid      uint32
	flags    uint8 // mailstore.SystemFlag
	hasKw    bool
	modseq   uint64
	date     int64 // internal date, Unix microseconds (the store's precision)
	size     int64
	crlfSize int64
	content  int64 // content id (mailstore.MessageMeta.ContentID); 0: unknown
}

// count is the number of messages in the view (the highest sequence
// number).
func (s *selected) count() int { return len(s.msgs) }

// index returns the position of uid in the view.
func (s *selected) index(uid uint32) (int, bool) {
	return slices.BinarySearchFunc(s.msgs, uid, func(m vmsg, u uint32) int {
		switch {
		case m.uid < u:
			return -1
		case m.uid > u:
			return 1
		}
		return 0
	})
}

// meta returns message i's metadata. Its keywords are the view's: the
// caller must not modify them.
func (s *selected) meta(i int) mailstore.MessageMeta {
	m := &s.msgs[i]
	mm := mailstore.MessageMeta{
		UID:          m.uid,
		ModSeq:       m.modseq,
		Flags:        mailstore.Flags{System: mailstore.SystemFlag(m.flags)},
		InternalDate: time.UnixMicro(m.date),
		Size:         m.size,
		CRLFSize:     m.crlfSize,
		ContentID:    m.content,
	}
	if m.hasKw {
		mm.Flags.Keywords = s.kws[m.uid]
	}
	return mm
}

// setFlags records message i's flags and mod-sequence.
func (s *selected) setFlags(i int, f mailstore.Flags, modseq uint64) {
	m := &s.msgs[i]
	s.touch(m.uid)
	m.flags, m.modseq = uint8(f.System), modseq
	m.hasKw = len(f.Keywords) > 0
	if m.hasKw {
		if s.kws == nil {
			s.kws = make(map[uint32][]string)
		}
		s.kws[m.uid] = slices.Clone(f.Keywords)
	} else if s.kws != nil {
		delete(s.kws, m.uid)
	}
}

// set records everything about message i; a ContentID of 0 keeps the one
// known.
func (s *selected) set(i int, mm mailstore.MessageMeta) {
	m := &s.msgs[i]
	m.date, m.size, m.crlfSize = mm.InternalDate.UnixMicro(), mm.Size, mm.CRLFSize
	if mm.ContentID != 0 {
		m.content = mm.ContentID
	}
	s.setFlags(i, mm.Flags, mm.ModSeq)
}

// add appends a message whose UID is above every UID of the view.
func (s *selected) add(mm mailstore.MessageMeta) {
	s.msgs = append(s.msgs, vmsg{uid: mm.UID})
	s.set(len(s.msgs)-1, mm)
}

// uids returns the view's UIDs, ascending.
func (s *selected) uids() []uint32 {
	out := make([]uint32, len(s.msgs))
	for i := range s.msgs {
		out[i] = s.msgs[i].uid
	}
	return out
}
