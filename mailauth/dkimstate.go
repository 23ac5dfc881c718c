package mailauth

import (
	"sort"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// Which DKIM key signs when. A rotated-in key is published before it signs
// (its SignFrom lies ahead, by the time its DNS record needs to be added
// and to reach the receivers' resolvers), so that no message is ever
// signed with a key receivers cannot look up yet (RFC 6376 §3.6.2: a
// verifier that finds no key record fails the signature, and DMARC, RFC
// 7489 §4.2, then has only SPF, which forwarded mail fails). The rule is
// one, used by the signer and by `postrider dkim list|remove` and
// `postrider dns` alike:
//
//	per algorithm, the newest (by CreatedAt) non-retired key whose
//	SignFrom has passed signs; no other key does.
//
// Newest by creation, not by SignFrom: a rotation made after another
// replaces it, whatever times the two gave. When a newer key starts
// signing, the one before is superseded: nothing is written to the store
// at that moment, the state follows from the times. A superseded key
// stays listed and published, since mail signed with it may still be in
// queues or be verified again later.

// DKIMKeyStatus is where a key stands at a given moment.
type DKIMKeyStatus int

// Key states.
const (
	// DKIMPending: not signing yet; its record is to be published now, it
	// signs from SignFrom.
	DKIMPending DKIMKeyStatus = iota + 1
	// DKIMSigning: the key that signs its algorithm's signatures.
	DKIMSigning
	// DKIMSuperseded: a newer key of its algorithm signs instead; it will
	// not sign again.
	DKIMSuperseded
	// DKIMRetired: retired (RetiredAt); it will not sign again.
	DKIMRetired
)

func (s DKIMKeyStatus) String() string {
	switch s {
	case DKIMPending:
		return "published"
	case DKIMSigning:
		return "signing"
	case DKIMSuperseded:
		return "superseded"
	case DKIMRetired:
		return "retired"
	}
	return "unknown"
}

// DKIMKeyState is one key's state at a moment.
type DKIMKeyState struct {
	Key    mailstore.DKIMKey
	Status DKIMKeyStatus
	// Until is, for a pending or signing key, when a newer key already
	// stored takes over from it (zero when none will).
	Until time.Time
	// Stopped is, for a superseded or retired key, when it last signed:
	// the moment a newer key took over, or its retirement. Zero when it
	// never signed (a newer key took over before its time came, or it was
	// retired before it), so its record may go at once.
	Stopped time.Time
}

// DKIMKeyStates returns the state at now of each key of one domain, in the
// order given.
func DKIMKeyStates(keys []mailstore.DKIMKey, now time.Time) []DKIMKeyState {
	// Newest first by creation; keys created together keep their order.
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return keys[idx[a]].CreatedAt.After(keys[idx[b]].CreatedAt) })
	out := make([]DKIMKeyState, len(keys))
	// takeover[alg] is the earliest SignFrom of the non-retired keys of
	// alg newer than the one at hand: from then on a newer key has
	// started, and the one at hand never signs again.
	takeover := map[string]time.Time{}
	for _, i := range idx {
		k := keys[i]
		from := signFrom(k)
		next, hasNext := takeover[k.Algorithm]
		st := DKIMKeyState{Key: k}
		if !k.RetiredAt.IsZero() {
			st.Status = DKIMRetired
			stop := k.RetiredAt
			if hasNext && next.Before(stop) {
				stop = next
			}
			if from.Before(stop) {
				st.Stopped = stop
			}
			out[i] = st
			continue // a retired key takes over from nothing
		}
		switch {
		case hasNext && !now.Before(next), hasNext && !from.Before(next):
			// A newer key has started, or starts no later than this
			// one would.
			st.Status = DKIMSuperseded
			if from.Before(next) && !now.Before(next) {
				st.Stopped = next
			}
		case now.Before(from):
			st.Status = DKIMPending
		default:
			st.Status = DKIMSigning
		}
		if hasNext && st.Status != DKIMSuperseded {
			st.Until = next
		}
		if !hasNext || from.Before(next) {
			takeover[k.Algorithm] = from
		}
		out[i] = st
	}
	return out
}

// signFrom is when a key may sign; a key without the time signs from its
// creation (mailstore.DKIMKey.SignFrom).
func signFrom(k mailstore.DKIMKey) time.Time {
	if k.SignFrom.IsZero() {
		return k.CreatedAt
	}
	return k.SignFrom
}
