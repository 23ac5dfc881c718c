// Package mailauth authenticates inbound mail: SPF (RFC 7208), DKIM
// verification (RFC 6376) and DMARC (RFC 7489), with the
// Authentication-Results: header field (RFC 8601) that records the
// verdict. Every DNS query goes through the Resolver given (internal/dnsr)
// and every check is bounded in lookups and in time; a DNS failure is
// reported as temperror, never as a verdict.
//
// smtpd uses it on the inbound role (port 25): SPF as soon as the
// transaction has a recipient, the rest once the message is received and
// before it is stored.
package mailauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// Defaults of Checker's zero fields.
const (
	// DefaultSPFTimeout bounds check_host(); RFC 7208 §4.6.4 asks for a
	// limit of at least 20 seconds.
	DefaultSPFTimeout = 20 * time.Second
	// DefaultTimeout bounds the DKIM key and DMARC record lookups of one
	// message.
	DefaultTimeout = 20 * time.Second
	// DefaultMaxSignatures bounds the DKIM signatures verified per
	// message; the rest are ignored. Each costs a DNS query and a pass
	// over the body.
	DefaultMaxSignatures = 5
)

// Mode says what a DMARC failure does to a message.
type Mode int

const (
	// Enforce applies the domain owner's policy: reject refuses the
	// message, quarantine files it as junk.
	Enforce Mode = iota
	// QuarantineOnly files every failing message whose policy is reject
	// or quarantine as junk, and refuses none.
	QuarantineOnly
	// ReportOnly delivers everything normally with the verdict in
	// Authentication-Results:; it never defers a message for a DNS failure.
	ReportOnly
)

// Mode names, as POSTRIDER_DMARC_POLICY takes them.
const (
	ModeEnforce        = "enforce"
	ModeQuarantineOnly = "quarantine-only"
	ModeReportOnly     = "report-only"
)

// ParseMode maps a mode name.
func ParseMode(s string) (Mode, error) {
	switch s {
	case ModeEnforce:
		return Enforce, nil
	case ModeQuarantineOnly:
		return QuarantineOnly, nil
	case ModeReportOnly:
		return ReportOnly, nil
	}
	return 0, fmt.Errorf("%q: want %s, %s or %s", s, ModeEnforce, ModeQuarantineOnly, ModeReportOnly)
}

func (m Mode) String() string {
	switch m {
	case QuarantineOnly:
		return ModeQuarantineOnly
	case ReportOnly:
		return ModeReportOnly
	}
	return ModeEnforce
}

// Action is what the receiver does with a message.
type Action int

const (
	// Deliver as usual.
	Deliver Action = iota
	// Quarantine: deliver to the recipient's junk mailbox.
	Quarantine
	// Reject: refuse the message (550 5.7.1); nothing is stored.
	Reject
	// Defer: the verdict needs DNS answers that could not be had; refuse
	// for now (451) so that the sender tries again.
	Defer
)

func (a Action) String() string {
	switch a {
	case Quarantine:
		return "quarantine"
	case Reject:
		return "reject"
	case Defer:
		return "defer"
	}
	return "deliver"
}

// Checker runs the checks. Its zero values take the defaults; Resolver is
// required. A Checker is safe for concurrent use.
type Checker struct {
	Resolver      Resolver
	Mode          Mode
	SPFTimeout    time.Duration // check_host(); 0 = DefaultSPFTimeout
	Timeout       time.Duration // DKIM and DMARC of one message; 0 = DefaultTimeout
	MaxSignatures int           // 0 = DefaultMaxSignatures
	MaxHeader     int           // header section held in memory; 0 = DefaultMaxHeader
	// Sample returns a number in [0, 100) for DMARC's pct= (RFC 7489
	// §6.6.4); nil = uniformly random.
	Sample func() int
}

func (c *Checker) spfTimeout() time.Duration {
	if c.SPFTimeout > 0 {
		return c.SPFTimeout
	}
	return DefaultSPFTimeout
}

func (c *Checker) maxSignatures() int {
	if c.MaxSignatures > 0 {
		return c.MaxSignatures
	}
	return DefaultMaxSignatures
}

func (c *Checker) maxHeader() int {
	if c.MaxHeader > 0 {
		return c.MaxHeader
	}
	return DefaultMaxHeader
}

func (c *Checker) sample() int {
	if c.Sample != nil {
		return c.Sample()
	}
	return rand.IntN(100)
}

// Result is the verdict on one message.
type Result struct {
	SPF   SPFResult
	DKIM  []DKIMResult // one per verified signature; none when unsigned
	DMARC DMARCResult
	// Action is what the Checker's Mode makes of the verdict.
	Action Action
}

// ErrNoChecker is returned by Message on a nil Checker or one without a
// Resolver.
var ErrNoChecker = errors.New("mailauth: no resolver")

// Message verifies the DKIM signatures of the message read from msg and
// evaluates DMARC with them and spfRes (from SPF, for the same
// transaction), within Timeout. It reads msg to its end. The error is a
// failure to read the message (or a header section over MaxHeader); DNS
// trouble is in the Result, as temperror.
func (c *Checker) Message(ctx context.Context, spfRes SPFResult, msg io.Reader) (*Result, error) {
	if c == nil || c.Resolver == nil {
		return nil, ErrNoChecker
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hdr, body, err := readHeader(msg, c.maxHeader())
	if err != nil {
		return nil, err
	}
	fs := splitFields(hdr)
	res := &Result{SPF: spfRes}
	if res.DKIM, err = c.verifyDKIM(ctx, hdr, fs, body); err != nil {
		return nil, err
	}
	from, why := fromDomain(fs)
	switch {
	case why == errNoFrom:
		// No author domain is claimed: DMARC has nothing to protect.
		res.DMARC = DMARCResult{Result: DMARCNone, Reason: why}
	case from == "":
		// RFC 7489 §6.6.1: no single author domain to evaluate.
		// Such a message breaks RFC 5322 §3.6 and is refused where the
		// policy is enforced, as RFC 7489 §6.6.1 says receivers typically
		// do: else a forger could hide the domain it claims.
		res.DMARC = DMARCResult{Result: DMARCPermError, Applied: PolicyReject, Reason: why}
	default:
		res.DMARC = c.evalDMARC(ctx, from, spfRes, res.DKIM)
	}
	res.Action = c.action(res.DMARC)
	return res, nil
}

// action maps a DMARC verdict to what the Mode does with it.
func (c *Checker) action(d DMARCResult) Action {
	if c.Mode == ReportOnly {
		return Deliver
	}
	if d.Result == DMARCTempError {
		if d.Policy == PolicyNone {
			return Deliver // whatever the answers, nothing would be done
		}
		return Defer
	}
	switch d.Applied {
	case PolicyReject:
		if c.Mode == QuarantineOnly {
			return Quarantine
		}
		return Reject
	case PolicyQuarantine:
		return Quarantine
	}
	return Deliver
}
