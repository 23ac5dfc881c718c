package auth

import (
	"fmt"
	"net/netip"
	"time"
)

// ThrottlePolicy says how failed logins slow down and refuse further logins.
//
// Failures are counted in the store (so every node sees them) under three
// keys, over the last Window:
//
//   - "ip:<client>": every failure from the client address; IPv6 clients
//     are counted by /64, since one host usually owns a whole /64. Free for
//     IPFree failures, then a delay that doubles with every failure from
//     BaseDelay up to MaxDelay; from IPBlock failures on, logins from that
//     address are refused without looking at the password (ThrottledError).
//   - "userip:<address>|<client>": failures for one account from one
//     client address. Free for PairFree failures, then the same doubling
//     delay; refused from PairBlock failures on. This is the strict limit on
//     guessing one account's password, and it only ever affects the client
//     address that made the failures.
//   - "user:<address>": failures for one account from anywhere. This
//     slows a guesser spread over many addresses, but only mildly: after
//     AccountFree failures the doubling delay is capped at AccountMaxDelay
//     and it never refuses, so an attacker cannot lock the real user out
//     from the user's own address.
//
// Each attempt is decided and counted in one atomic step in the store
// (mailstore.Store.ReserveAuthFailure): the counts are read and, unless a
// limit refuses the attempt, the attempt is recorded under all its keys at
// once as a failure in flight, under a lock on the keys shared by every
// node. The refusal limits (IPBlock, PairBlock) count every failure, in
// flight or decided: so however many attempts run in parallel, on however
// many nodes, a client address gets at most PairBlock wrong-password
// verdicts per account, and IPBlock in all, within any Window (until a
// successful login from it forgets its counts, below).
//
// The delays count only decided failures: attempts whose password was
// wrong (ConfirmAuthFailure marks their reservation so before the verdict
// is returned). Attempts still in flight do not delay the ones that follow,
// so a client that opens several connections at once with the right
// password (a mail client at start-up, a phone, a submission client) logs
// them all in without delay (up to PairBlock at once: the limits refuse
// further attempts while that many are in flight). A delay only slows a guesser that waits for each verdict before
// the next guess, and that one's failures are decided before its next
// attempt; a guesser in parallel is not slowed by delays anyway (they run
// side by side) but stopped by the limits, which count its attempts in
// flight. The delay applied is the largest of the three keys' delays, slept
// (cancellably) after that step and before the password is checked,
// whatever the outcome, so it cannot be skipped by hanging up early.
//
// A wrong password keeps its reservation as the recorded failure (written
// before the check, so hanging up during the check does not make a guess
// free) and confirms it as decided; should the confirm fail to be written,
// the failure stays in flight: it still counts for the limits, only not for
// the delays. An attempt that ends without a verdict (the client hung up
// during the delay, the store failed) gives its reservation back, so it
// neither counts nor sticks; only when that write fails too (or the node
// dies) does the reservation stay, in flight, counting for the limits until
// it leaves the window like any other failure, which cannot lock the real
// user out (the account-wide key never refuses, the others only hold for
// this client address). A refused attempt is not recorded as a failure: a
// misconfigured client retrying an old password stops adding to its
// address's count once it is refused (PairBlock), so it cannot get its
// neighbours behind the same NAT refused too. Failures for unknown users
// are recorded like any other (under the normalised address; an invalid
// username counts only for the client address).
//
// A successful login gives its reservation back and forgets the failures of
// its client address (the "ip:" key and its own "userip:" key, in flight or
// decided) but not the account-wide count, which expires with the window.
// So a guesser who owns one valid account can clear its address's count by
// logging in, but never its per-account counts for the accounts it is
// guessing.
type ThrottlePolicy struct {
	Window          time.Duration // failures older than this are ignored; default 15 min
	BaseDelay       time.Duration // first delay; default 1 s
	MaxDelay        time.Duration // cap of every delay; default 15 s
	IPFree          int           // default 5
	IPBlock         int           // default 50
	PairFree        int           // default 3
	PairBlock       int           // default 10
	AccountFree     int           // default 10
	AccountMaxDelay time.Duration // default 2 s
}

// DefaultThrottlePolicy is the policy used for zero fields of Options.Throttle.
var DefaultThrottlePolicy = ThrottlePolicy{
	Window:          15 * time.Minute,
	BaseDelay:       time.Second,
	MaxDelay:        15 * time.Second,
	IPFree:          5,
	IPBlock:         50,
	PairFree:        3,
	PairBlock:       10,
	AccountFree:     10,
	AccountMaxDelay: 2 * time.Second,
}

func (p ThrottlePolicy) withDefaults() ThrottlePolicy {
	d := DefaultThrottlePolicy
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur(&p.Window, d.Window)
	setDur(&p.BaseDelay, d.BaseDelay)
	setDur(&p.MaxDelay, d.MaxDelay)
	setDur(&p.AccountMaxDelay, d.AccountMaxDelay)
	setInt(&p.IPFree, d.IPFree)
	setInt(&p.IPBlock, d.IPBlock)
	setInt(&p.PairFree, d.PairFree)
	setInt(&p.PairBlock, d.PairBlock)
	setInt(&p.AccountFree, d.AccountFree)
	return p
}

// throttleKeyset holds the store keys of one login attempt.
type throttleKeyset struct {
	bucket string // client address or /64, for logs
	ip     string
	pair   string // "" for an invalid username
	user   string // "" for an invalid username
}

// ClientBucket returns the address that failures of remote are counted
// under: the address itself for IPv4 (also IPv4-mapped IPv6), its /64 for
// IPv6, "unknown" when remote is not valid.
func ClientBucket(remote netip.Addr) string {
	remote = remote.Unmap().WithZone("")
	switch {
	case !remote.IsValid():
		return "unknown"
	case remote.Is4():
		return remote.String()
	default:
		return netip.PrefixFrom(remote, 64).Masked().String()
	}
}

func throttleKeys(addr string, remote netip.Addr) throttleKeyset {
	b := ClientBucket(remote)
	k := throttleKeyset{bucket: b, ip: "ip:" + b}
	if addr != "" {
		k.pair = "userip:" + addr + "|" + b
		k.user = "user:" + addr
	}
	return k
}

func (k throttleKeyset) list() []string {
	if k.user == "" {
		return []string{k.ip}
	}
	return []string{k.ip, k.pair, k.user}
}

// limits returns the refusal limit of each key of list(), in that order;
// the account-wide key never refuses (0).
func (k throttleKeyset) limits(p ThrottlePolicy) []int {
	if k.user == "" {
		return []int{p.IPBlock}
	}
	return []int{p.IPBlock, p.PairBlock, 0}
}

// resetOnSuccess returns the keys whose failures a successful login
// forgets: those of its client address.
func (k throttleKeyset) resetOnSuccess() []string {
	if k.pair == "" {
		return []string{k.ip}
	}
	return []string{k.ip, k.pair}
}

type verdict struct {
	blocked    bool
	retryAfter time.Duration
	delay      time.Duration
	reason     string // which limit applied, for logs
}

// decide refuses on the counts of all failures (in flight and decided) and
// delays by the decided ones only (see ThrottlePolicy).
func (p ThrottlePolicy) decide(k throttleKeyset, counts, decided map[string]int) verdict {
	ipN, pairN := counts[k.ip], 0
	ipD, pairD, userD := decided[k.ip], 0, 0
	if k.user != "" {
		pairN = counts[k.pair]
		pairD, userD = decided[k.pair], decided[k.user]
	}
	if ipN >= p.IPBlock {
		return verdict{blocked: true, retryAfter: p.Window, reason: fmt.Sprintf("client %d failures", ipN)}
	}
	if k.pair != "" && pairN >= p.PairBlock {
		return verdict{blocked: true, retryAfter: p.Window, reason: fmt.Sprintf("account from client %d failures", pairN)}
	}
	var v verdict
	consider := func(d time.Duration, reason string) {
		if d > v.delay {
			v.delay, v.reason = d, reason
		}
	}
	consider(growDelay(ipD, p.IPFree, p.BaseDelay, p.MaxDelay), fmt.Sprintf("client %d failures", ipD))
	consider(growDelay(pairD, p.PairFree, p.BaseDelay, p.MaxDelay), fmt.Sprintf("account from client %d failures", pairD))
	consider(growDelay(userD, p.AccountFree, p.BaseDelay, min(p.AccountMaxDelay, p.MaxDelay)), fmt.Sprintf("account %d failures", userD))
	return v
}

// growDelay is 0 for the first free failures, then base doubling with each
// further failure, capped at limit.
func growDelay(n, free int, base, limit time.Duration) time.Duration {
	if n < free {
		return 0
	}
	shift := n - free
	if shift >= 30 {
		return limit
	}
	d := base << shift
	if d <= 0 || d > limit {
		return limit
	}
	return d
}
