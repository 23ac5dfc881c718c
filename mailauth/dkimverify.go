package mailauth

import (
	"context"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIM results (RFC 6376 §6.1, as RFC 8601 §2.7.1 writes them).
const (
	DKIMNone      = "none"
	DKIMPass      = "pass"
	DKIMFail      = "fail"
	DKIMTempError = "temperror"
	DKIMPermError = "permerror"
)

// DKIMResult is the verification of one DKIM-Signature: field.
type DKIMResult struct {
	Result   string
	Domain   string // d= (the SDID), lower case
	Selector string // s=
	// B is the start of the signature (b=), to tell signatures apart in
	// Authentication-Results: (RFC 6008 header.b).
	B      string
	Reason string
}

// verifyDKIM verifies the first MaxSignatures DKIM signatures of the
// message hdr+body (RFC 6376 §6). It reads body to its end. The error is
// a failure to read the message, not a verdict.
func (c *Checker) verifyDKIM(ctx context.Context, hdr []byte, fs []field, body io.Reader) ([]DKIMResult, error) {
	sigs := fieldsNamed(fs, "DKIM-Signature")
	if len(sigs) == 0 {
		_, err := io.Copy(io.Discard, body)
		return nil, err
	}
	max := c.maxSignatures()
	vs, err := dkim.VerifyWithOptions(io.MultiReader(strings.NewReader(string(hdr)), body), &dkim.VerifyOptions{
		LookupTXT:        strictResolver{c.Resolver}.txtFunc(ctx),
		MaxVerifications: max,
	})
	if err != nil && err != dkim.ErrTooManySignatures {
		return nil, err
	}
	out := make([]DKIMResult, 0, len(vs))
	for i, v := range vs {
		r := DKIMResult{Result: DKIMPass, Domain: strings.ToLower(v.Domain)}
		if i < len(sigs) {
			tags := tagList(sigs[i])
			r.Selector = tags["s"]
			r.B = tags["b"]
			if len(r.B) > 8 {
				// RFC 6008 §4: the first 8 characters at least.
				r.B = r.B[:8]
			}
		}
		switch {
		case v.Err == nil:
		case dkim.IsTempFail(v.Err):
			r.Result = DKIMTempError
		case dkim.IsPermFail(v.Err):
			r.Result = DKIMPermError
		default:
			r.Result = DKIMFail
		}
		if v.Err != nil {
			r.Reason = strings.TrimPrefix(v.Err.Error(), "dkim: ")
		}
		if r.Result == DKIMTempError && ctx.Err() != nil {
			r.Reason = "time limit reached"
		}
		out = append(out, r)
	}
	return out, nil
}

// tagList parses a DKIM tag-list (RFC 6376 §3.2) leniently, for the
// values shown in Authentication-Results: only: whitespace is removed,
// the first of duplicate tags wins, and at most 32 tags are read.
func tagList(v string) map[string]string {
	out := map[string]string{}
	for i, spec := range strings.Split(v, ";") {
		if i >= 32 {
			break
		}
		k, val, ok := strings.Cut(spec, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := out[k]; dup {
			continue
		}
		out[k] = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, val)
	}
	return out
}
