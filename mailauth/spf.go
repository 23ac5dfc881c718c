package mailauth

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"
	"golang.org/x/net/idna"
)

// SPF results (RFC 7208 §2.6), as Authentication-Results: writes them
// (RFC 8601 §2.7.2).
const (
	SPFNone      = "none"
	SPFNeutral   = "neutral"
	SPFPass      = "pass"
	SPFFail      = "fail"
	SPFSoftFail  = "softfail"
	SPFTempError = "temperror"
	SPFPermError = "permerror"
)

// SPFResult is the outcome of check_host() for one SMTP transaction.
type SPFResult struct {
	Result string
	// Identity is "mailfrom", or "helo" when the reverse-path is null
	// (RFC 7208 §2.4).
	Identity string
	// Domain is the domain checked (ASCII, lower case; "" when there was
	// none to check): DMARC's SPF-authenticated identifier (RFC 7489 §3.1.2).
	Domain string
	// MailFrom is the reverse-path as given ("" for the null path).
	MailFrom string
	// Reason says why, for logs and the header comment; never the whole
	// trace.
	Reason string
}

// SPF evaluates check_host() (RFC 7208 §4) for the client at ip: the
// domain of mailFrom, or of helo when mailFrom is the null reverse-path
// (RFC 7208 §2.4, as "postmaster@helo"). The 10-lookup and void-lookup
// limits of RFC 7208 §4.6.4 apply, and the whole evaluation is bounded by
// SPFTimeout; a DNS failure gives temperror.
func (c *Checker) SPF(ctx context.Context, ip netip.Addr, helo, mailFrom string) SPFResult {
	res := SPFResult{Identity: "mailfrom", MailFrom: mailFrom}
	local, domain := "postmaster", helo
	if mailFrom != "" {
		at := strings.LastIndexByte(mailFrom, '@')
		if at < 0 {
			res.Result, res.Reason = SPFNone, "no domain in MAIL FROM"
			return res
		}
		local, domain = mailFrom[:at], mailFrom[at+1:]
	} else {
		res.Identity = "helo"
	}
	ascii, ok := spfDomain(domain)
	if !ok {
		// RFC 7208 §4.3: a malformed or single-label domain gives "none".
		res.Result, res.Reason = SPFNone, "no valid domain to check"
		return res
	}
	res.Domain = ascii
	if !ip.IsValid() {
		// A proxy did not know the client's address: nothing to check.
		res.Result, res.Reason = SPFNone, "client address unknown"
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, c.spfTimeout())
	defer cancel()
	r, err := spf.CheckHostWithSender(net.IP(ip.Unmap().AsSlice()), helo, local+"@"+ascii,
		spf.WithContext(ctx), spf.WithResolver(strictResolver{c.Resolver}))
	res.Result = string(r)
	if ctx.Err() != nil && r != spf.Pass && r != spf.Fail && r != spf.SoftFail && r != spf.Neutral {
		// RFC 7208 §4.6.4: the time bound gives temperror.
		res.Result = SPFTempError
	}
	res.Reason = spfReason(err)
	return res
}

// spfReason turns the library's error into a short reason; matches are
// not reasons.
func spfReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, spf.ErrMatchedAll), errors.Is(err, spf.ErrMatchedA), errors.Is(err, spf.ErrMatchedIP),
		errors.Is(err, spf.ErrMatchedMX), errors.Is(err, spf.ErrMatchedPTR), errors.Is(err, spf.ErrMatchedExists):
		return ""
	case errors.Is(err, spf.ErrNoResult):
		return "no SPF record"
	case errors.Is(err, spf.ErrLookupLimitReached):
		return "more than 10 DNS lookups (RFC 7208 §4.6.4)"
	case errors.Is(err, spf.ErrVoidLookupLimitReached):
		return "more than 2 void DNS lookups (RFC 7208 §4.6.4)"
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return "DNS: " + de.Err
	}
	return strings.TrimPrefix(err.Error(), "spf: ")
}

// asciiDomain returns a domain in lower-case ASCII: as it is when it is
// ASCII (names that are not host names, such as "_spf.example.com", are
// fine in DNS), else its A-labels (RFC 5891 §5).
func asciiDomain(d string) (string, bool) {
	ascii := true
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		var err error
		if d, err = idna.Lookup.ToASCII(d); err != nil {
			return "", false
		}
	}
	return strings.ToLower(d), d != ""
}

// spfDomain returns the ASCII form of a domain that check_host() can
// evaluate: at least two labels, each of 1 to 63 octets, at most 253 in
// all (RFC 7208 §4.3). Address literals are not domains.
func spfDomain(d string) (string, bool) {
	d = strings.TrimSuffix(d, ".")
	if d == "" || strings.HasPrefix(d, "[") {
		return "", false
	}
	a, ok := asciiDomain(d)
	if !ok || len(a) > 253 || !strings.Contains(a, ".") {
		return "", false
	}
	for _, l := range strings.Split(a, ".") {
		if l == "" || len(l) > 63 {
			return "", false
		}
	}
	return a, true
}
