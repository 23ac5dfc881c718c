package mailauth

import (
	"bytes"
	"context"
	"errors"
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

// maxBlankRun bounds a run of white space (spaces, tabs and line breaks)
// in a body being verified: go-msgauth's body canonicalizations hold such
// a run in memory until the next other character (RFC 6376 §3.4.3 and
// §3.4.4 drop trailing empty lines), and its simple one copies the run
// again for every write, so a body of megabytes of empty lines would cost
// memory and quadratic time per signature. No real message has 128 KiB
// of white space in a row; one that does is not verified.
const maxBlankRun = 128 << 10

var errBlankRun = errors.New("body has a run of over 128 KiB of white space; not verified")

// verifyDKIM verifies the first MaxSignatures DKIM signatures of the
// message hdr+body (RFC 6376 §6); an unsigned message's body is not read.
// The error is a failure to read the message, not a verdict.
func (c *Checker) verifyDKIM(ctx context.Context, hdr []byte, fs []field, body io.Reader) ([]DKIMResult, error) {
	sigs := fieldsNamed(fs, "DKIM-Signature")
	if len(sigs) == 0 {
		return nil, nil
	}
	max := c.maxSignatures()
	vs, err := dkim.VerifyWithOptions(io.MultiReader(bytes.NewReader(hdr), &blankRunGuard{r: body}), &dkim.VerifyOptions{
		LookupTXT:        strictResolver{c.Resolver}.txtFunc(ctx),
		MaxVerifications: max,
	})
	if errors.Is(err, errBlankRun) {
		// RFC 6376 §6.1: a signature the verifier will not process.
		out := make([]DKIMResult, min(len(sigs), max))
		for i := range out {
			tags := tagList(sigs[i])
			out[i] = DKIMResult{Result: DKIMPermError, Domain: strings.ToLower(tags["d"]), Reason: errBlankRun.Error()}
		}
		return out, nil
	}
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

// blankRunGuard passes a body through and fails with errBlankRun at a run
// of white space longer than maxBlankRun.
type blankRunGuard struct {
	r   io.Reader
	run int
}

func (g *blankRunGuard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	for _, c := range p[:n] {
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			g.run++
			if g.run > maxBlankRun {
				return 0, errBlankRun
			}
		} else {
			g.run = 0
		}
	}
	return n, err
}
