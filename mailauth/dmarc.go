package mailauth

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// DMARC results (RFC 7489 §11.2).
const (
	DMARCNone      = "none"
	DMARCPass      = "pass"
	DMARCFail      = "fail"
	DMARCTempError = "temperror"
	DMARCPermError = "permerror"
)

// DMARC policies (RFC 7489 §6.3 p=).
const (
	PolicyNone       = "none"
	PolicyQuarantine = "quarantine"
	PolicyReject     = "reject"
)

// DMARCResult is the DMARC evaluation of a message (RFC 7489 §6.6).
type DMARCResult struct {
	Result string
	// FromDomain is the RFC5322.From domain (ASCII, lower case); "" when
	// the message has no single one.
	FromDomain string
	// Policy is the domain owner's policy for this message (p=, or sp=
	// for a subdomain, RFC 7489 §6.3), "" when no record applies.
	Policy string
	// Applied is the policy to apply after the pct= sampling of RFC 7489
	// §6.6.4: Policy, or the next weaker one for a message left out of the
	// sample. Only a failing message has one.
	Applied string
	// SPFAligned and DKIMAligned tell which identifier passed aligned.
	SPFAligned, DKIMAligned bool
	Reason                  string
}

// errNoFrom is fromDomain's reason for a message without a From: field.
const errNoFrom = "no From: field"

// maxFromDomains bounds the From: addresses looked at.
const maxFromDomains = 32

// fromDomain returns the one RFC5322.From domain of a header section, or
// "" and why there is none. RFC 7489 §6.6.1: a message with several From:
// fields, or a From: field with addresses in different domains, or one
// that cannot be read, has no single domain to evaluate; such a message
// breaks RFC 5322 §3.6 (and could hide the domain a reader sees) and is
// refused where the policy is enforced. A message without any From: field
// claims no author domain; errNoFrom tells it apart.
func fromDomain(fs []field) (domain string, reason string) {
	froms := fieldsNamed(fs, "From")
	switch {
	case len(froms) == 0:
		return "", errNoFrom
	case len(froms) > 1:
		return "", "more than one From: field"
	}
	p := mail.AddressParser{WordDecoder: lenientWords}
	list, err := p.ParseList(froms[0])
	if err != nil || len(list) == 0 {
		return "", "unreadable From: field"
	}
	if len(list) > maxFromDomains {
		return "", "too many From: addresses"
	}
	for _, a := range list {
		at := strings.LastIndexByte(a.Address, '@')
		if at < 0 {
			return "", "From: address without a domain"
		}
		d, ok := asciiDomain(strings.TrimSuffix(a.Address[at+1:], "."))
		if !ok || strings.HasPrefix(d, "[") {
			return "", "From: address without a valid domain"
		}
		if domain != "" && d != domain {
			return "", "From: addresses in more than one domain"
		}
		domain = d
	}
	return domain, ""
}

// lenientWords decodes RFC 2047 words in display names without failing on
// unknown charsets: only the addresses matter here.
var lenientWords = &mime.WordDecoder{CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil }}

// OrgDomain returns the organizational domain of a domain (RFC 7489 §3.2):
// one label more than its public suffix, by the public suffix list; a
// domain that is itself a public suffix is its own.
func OrgDomain(d string) string {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	o, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return o
}

// aligned reports identifier alignment (RFC 7489 §3.1): the same domain
// in strict mode, the same organizational domain in relaxed mode.
func aligned(a, b string, mode dmarc.AlignmentMode) bool {
	if a == "" || b == "" {
		return false
	}
	if sameHost(a, b) {
		return true
	}
	return mode != dmarc.AlignmentStrict && OrgDomain(a) == OrgDomain(b)
}

// errDMARCTemp: the policy could not be looked up for now.
var errDMARCTemp = errors.New("DNS failure looking up the DMARC record")

// lookupDMARC discovers the DMARC record for a From domain (RFC 7489
// §6.6.3): _dmarc.<domain>, then _dmarc.<organizational domain>. It
// returns the record, whether it was found at the organizational domain
// (so that sp= applies), nil for none, or an error: errDMARCTemp, or a
// syntax error of the record found.
func (c *Checker) lookupDMARC(ctx context.Context, domain string) (*dmarc.Record, bool, error) {
	rec, err := c.dmarcRecord(ctx, domain)
	if err != nil || rec != nil {
		return rec, false, err
	}
	org := OrgDomain(domain)
	if org == domain {
		return nil, false, nil
	}
	rec, err = c.dmarcRecord(ctx, org)
	return rec, true, err
}

// dmarcRecord reads the one DMARC record of _dmarc.<domain>: nil when
// there is none, or more than one (RFC 7489 §6.6.3 step 5: discovery ends
// and DMARC does not apply).
func (c *Checker) dmarcRecord(ctx context.Context, domain string) (*dmarc.Record, error) {
	var records int
	txt := strictResolver{c.Resolver}.txtFunc(ctx)
	rec, err := dmarc.LookupWithOptions(domain, &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) {
		all, err := txt(name)
		// RFC 7489 §6.6.3 step 3: only the records that start with
		// "v=DMARC1" count.
		var v []string
		for _, t := range all {
			if strings.HasPrefix(t, "v=DMARC1") {
				if rest := strings.TrimLeft(t[len("v=DMARC1"):], " \t"); rest == "" || rest[0] == ';' {
					v = append(v, t)
				}
			}
		}
		records = len(v)
		return v, err
	}})
	switch {
	case dmarc.IsTempFail(err):
		return nil, errDMARCTemp
	case errors.Is(err, dmarc.ErrNoPolicy), records > 1:
		return nil, nil
	case err != nil:
		return nil, err
	}
	return rec, nil
}

// evalDMARC evaluates DMARC (RFC 7489 §6.6) for the From domain with the
// SPF and DKIM results.
func (c *Checker) evalDMARC(ctx context.Context, from string, spfRes SPFResult, sigs []DKIMResult) DMARCResult {
	res := DMARCResult{FromDomain: from}
	rec, atOrg, err := c.lookupDMARC(ctx, from)
	switch {
	case errors.Is(err, errDMARCTemp):
		res.Result, res.Reason = DMARCTempError, errDMARCTemp.Error()
		return res
	case err != nil:
		// RFC 7489 §6.6.3 step 6 asks for p=none when such a record has a
		// valid rua=; we send no reports, so it applies nothing either way.
		res.Result, res.Reason = DMARCPermError, strings.TrimPrefix(err.Error(), "dmarc: ")
		return res
	case rec == nil:
		res.Result = DMARCNone
		return res
	}
	res.Policy = string(rec.Policy)
	if atOrg && rec.SubdomainPolicy != "" {
		// RFC 7489 §6.3 sp=: for subdomains of the domain of the record.
		res.Policy = string(rec.SubdomainPolicy)
	}
	// RFC 7489 §4.2: pass when SPF or DKIM passes with an aligned identifier.
	res.SPFAligned = spfRes.Result == SPFPass && aligned(spfRes.Domain, from, rec.SPFAlignment)
	for _, s := range sigs {
		if s.Result == DKIMPass && aligned(s.Domain, from, rec.DKIMAlignment) {
			res.DKIMAligned = true
		}
	}
	if res.SPFAligned || res.DKIMAligned {
		res.Result = DMARCPass
		return res
	}
	// A temporary error of SPF or of a signature that could have aligned
	// leaves the result open (RFC 7489 §6.6.2 and §11.2 temperror).
	if spfRes.Result == SPFTempError && (spfRes.Domain == "" || aligned(spfRes.Domain, from, rec.SPFAlignment)) {
		res.Result, res.Reason = DMARCTempError, "SPF temporary error"
		return res
	}
	for _, s := range sigs {
		if s.Result == DKIMTempError && (s.Domain == "" || aligned(s.Domain, from, rec.DKIMAlignment)) {
			res.Result, res.Reason = DMARCTempError, "DKIM temporary error"
			return res
		}
	}
	res.Result = DMARCFail
	res.Applied = res.Policy
	if rec.Percent != nil && *rec.Percent < 100 && c.sample() >= *rec.Percent {
		// RFC 7489 §6.6.4: outside the pct= sample, the next weaker policy.
		switch res.Applied {
		case PolicyReject:
			res.Applied = PolicyQuarantine
		case PolicyQuarantine:
			res.Applied = PolicyNone
		}
	}
	return res
}
