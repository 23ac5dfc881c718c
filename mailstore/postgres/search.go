package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/mailstore"
)

// maxHeaderNameLength bounds a HEADER search field name.
const maxHeaderNameLength = 200

// Search implements mailstore.Store: the criteria become one parameterised
// SQL expression (values are never interpolated), evaluated over the
// mailbox's message rows, joined to the stored parse results only when a
// criterion needs them. String matches use the lower-cased search texts
// stored at delivery (see searchFold) with strpos, so no LIKE escaping is
// involved; header criteria use an anchored regular expression built from
// quoted literals.
func (s *Store) Search(ctx context.Context, accountID, mailboxID int64, c *mailstore.SearchCriteria) ([]uint32, error) {
	if c == nil {
		c = &mailstore.SearchCriteria{}
	}
	b := &searchBuilder{loc: s.opts.Location, args: []any{accountID, mailboxID}}
	expr, err := b.criteria(c, 0)
	if err != nil {
		return nil, err
	}
	join := ""
	if b.content {
		join = "JOIN contents c ON c.id = m.content_id"
	}
	var uids []int64
	err = s.pool.QueryRow(ctx, `SELECT (SELECT array_agg(m.uid ORDER BY m.uid) FROM messages m `+join+`
		WHERE m.mailbox_id = mb.id AND (`+expr+`)) FROM mailboxes mb WHERE mb.id = $2 AND mb.account_id = $1`,
		b.args...).Scan(&uids)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("search: %w", mailstore.ErrNoSuchMailbox)
	}
	if err != nil {
		return nil, mapErr("search", err)
	}
	if len(uids) == 0 {
		return nil, nil
	}
	out := make([]uint32, len(uids))
	for i, u := range uids {
		out[i] = uint32(u)
	}
	return out, nil
}

type searchBuilder struct {
	loc     *time.Location
	args    []any
	nodes   int
	content bool // a criterion reads contents (alias c)
}

func (b *searchBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + strconv.Itoa(len(b.args))
}

func (b *searchBuilder) count() error {
	b.nodes++
	if b.nodes > MaxSearchNodes {
		return fmt.Errorf("%w: more than %d search criteria", mailstore.ErrInvalidArgument, MaxSearchNodes)
	}
	return nil
}

// day returns midnight of t's calendar date in the server's zone: RFC 9051
// §6.4.4 compares dates "disregarding time and timezone".
func (b *searchBuilder) day(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, b.loc)
}

// sentDay is t's calendar date for comparison with contents.sent_day (the
// Date: header's own calendar date).
func sentDay(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func (b *searchBuilder) criteria(c *mailstore.SearchCriteria, depth int) (string, error) {
	if depth > MaxSearchDepth {
		return "", fmt.Errorf("%w: search criteria nested deeper than %d", mailstore.ErrInvalidArgument, MaxSearchDepth)
	}
	var parts []string
	add := func(s string) error {
		parts = append(parts, s)
		return b.count()
	}
	for _, set := range c.UIDs {
		starts, stops, err := uidRanges(set)
		if err != nil {
			return "", err
		}
		var e string
		switch len(starts) {
		case 0:
			e = "false"
		case 1:
			e = fmt.Sprintf("m.uid BETWEEN %s AND %s", b.arg(starts[0]), b.arg(stops[0]))
		default:
			e = fmt.Sprintf("EXISTS (SELECT 1 FROM unnest(%s::bigint[], %s::bigint[]) r(s, e) WHERE m.uid BETWEEN r.s AND r.e)",
				b.arg(starts), b.arg(stops))
		}
		if err := add(e); err != nil {
			return "", err
		}
	}
	dates := []struct {
		t  time.Time
		op string
	}{{c.Since, ">="}, {c.Before, "<"}}
	for _, d := range dates {
		if !d.t.IsZero() {
			if err := add(fmt.Sprintf("m.internal_date %s %s", d.op, b.arg(b.day(d.t)))); err != nil {
				return "", err
			}
		}
	}
	if !c.On.IsZero() {
		d := b.day(c.On)
		if err := add(fmt.Sprintf("(m.internal_date >= %s AND m.internal_date < %s)", b.arg(d), b.arg(d.AddDate(0, 0, 1)))); err != nil {
			return "", err
		}
	}
	saved := []struct {
		t  time.Time
		op string
	}{{c.SavedSince, ">="}, {c.SavedBefore, "<"}}
	for _, d := range saved {
		if !d.t.IsZero() {
			if err := add(fmt.Sprintf("m.save_date %s %s", d.op, b.arg(b.day(d.t)))); err != nil {
				return "", err
			}
		}
	}
	if !c.SavedOn.IsZero() {
		d := b.day(c.SavedOn)
		if err := add(fmt.Sprintf("(m.save_date >= %s AND m.save_date < %s)", b.arg(d), b.arg(d.AddDate(0, 0, 1)))); err != nil {
			return "", err
		}
	}
	for _, id := range c.ContentIDs {
		if err := add("m.content_id = " + b.arg(id)); err != nil {
			return "", err
		}
	}
	sent := []struct {
		t  time.Time
		op string
	}{{c.SentSince, ">="}, {c.SentBefore, "<"}, {c.SentOn, "="}}
	for _, d := range sent {
		if !d.t.IsZero() {
			b.content = true
			if err := add(fmt.Sprintf("c.sent_day %s %s::date", d.op, b.arg(sentDay(d.t)))); err != nil {
				return "", err
			}
		}
	}
	for _, h := range c.Header {
		e, err := b.header(h)
		if err != nil {
			return "", err
		}
		if err := add(e); err != nil {
			return "", err
		}
	}
	for _, v := range c.Body {
		b.content = true
		if err := add("(" + bodyMatch(b.arg(searchFold(v))) + ")"); err != nil {
			return "", err
		}
	}
	for _, v := range c.Text {
		b.content = true
		p := b.arg(searchFold(v))
		if err := add(fmt.Sprintf("(strpos(c.search_headers, %s) > 0 OR %s)", p, bodyMatch(p))); err != nil {
			return "", err
		}
	}
	if e := b.flags(c.Flag, false); e != "" {
		if err := add(e); err != nil {
			return "", err
		}
	}
	if e := b.flags(c.NotFlag, true); e != "" {
		if err := add(e); err != nil {
			return "", err
		}
	}
	if c.Larger > 0 {
		if err := add("m.size > " + b.arg(c.Larger)); err != nil {
			return "", err
		}
	}
	if c.Smaller > 0 {
		if err := add("m.size < " + b.arg(c.Smaller)); err != nil {
			return "", err
		}
	}
	if c.ModSeq > 0 {
		if err := add("m.modseq >= " + b.arg(int64(c.ModSeq))); err != nil {
			return "", err
		}
	}
	for i := range c.Not {
		e, err := b.criteria(&c.Not[i], depth+1)
		if err != nil {
			return "", err
		}
		if err := add("NOT (" + e + ")"); err != nil {
			return "", err
		}
	}
	for i := range c.Or {
		l, err := b.criteria(&c.Or[i][0], depth+1)
		if err != nil {
			return "", err
		}
		r, err := b.criteria(&c.Or[i][1], depth+1)
		if err != nil {
			return "", err
		}
		if err := add("((" + l + ") OR (" + r + "))"); err != nil {
			return "", err
		}
	}
	if len(parts) == 0 {
		return "true", nil
	}
	return strings.Join(parts, " AND "), nil
}

// bodyMatch renders "the body text contains the folded string p": in
// contents.search_text for a small content, in its content_text pieces for
// a large one (strings longer than textOverlap-2 octets that span two
// pieces are missed, see textspool.go). The text_pieces test keeps small
// contents from probing content_text at all; OFFSET 0 keeps the planner
// from turning the EXISTS into a hashed subplan, which would scan every
// content's pieces instead of this message's.
func bodyMatch(p string) string {
	return fmt.Sprintf(`strpos(c.search_text, %s) > 0 OR c.text_pieces > 0 AND EXISTS (
		SELECT 1 FROM content_text t WHERE t.content_id = c.id AND strpos(t.text, %s) > 0 OFFSET 0)`, p, p)
}

// flags renders "has all of f" (or, with none, "has none of f"); "" when f
// is empty. Keywords compare case-insensitively.
func (b *searchBuilder) flags(f mailstore.Flags, none bool) string {
	var parts []string
	if sys := int16(f.System) & 0x1f; sys != 0 {
		if none {
			parts = append(parts, fmt.Sprintf("m.flags & %s = 0", b.arg(sys)))
		} else {
			p := b.arg(sys)
			parts = append(parts, fmt.Sprintf("m.flags & %s = %s", p, p))
		}
	}
	for _, k := range f.Keywords {
		if !mailstore.ValidKeyword(k) {
			// No message can carry an invalid keyword.
			if !none {
				parts = append(parts, "false")
			}
			continue
		}
		e := fmt.Sprintf("EXISTS (SELECT 1 FROM unnest(m.keywords) k WHERE lower(k) = %s)", b.arg(strings.ToLower(k)))
		if none {
			e = "NOT " + e
		}
		parts = append(parts, e)
	}
	return strings.Join(parts, " AND ")
}

// header renders a FROM/TO/CC/BCC/SUBJECT/HEADER criterion against the
// stored "name: value\n" lines: a field with that name whose value contains
// the string (any value when it is empty).
func (b *searchBuilder) header(h mailstore.HeaderCriterion) (string, error) {
	key := strings.ToLower(strings.TrimSpace(h.Key))
	if key == "" || len(key) > maxHeaderNameLength {
		return "", fmt.Errorf("%w: bad header name in search", mailstore.ErrInvalidArgument)
	}
	for i := 0; i < len(key); i++ {
		// RFC 5322 §3.6.8 field-name: printable US-ASCII except colon.
		if key[i] <= ' ' || key[i] >= 0x7f || key[i] == ':' {
			return "", fmt.Errorf("%w: bad header name in search", mailstore.ErrInvalidArgument)
		}
	}
	b.content = true
	re := `(^|\n)` + quoteRegexp(key) + `:`
	if v := strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, h.Value); v != "" {
		re += ` [^\n]*` + quoteRegexp(searchFold(v))
	}
	return "c.search_headers ~ " + b.arg(re), nil
}

// quoteRegexp escapes every ASCII character that is not a letter or digit
// for a PostgreSQL advanced regular expression: a backslash followed by a
// non-alphanumeric character is that literal character.
func quoteRegexp(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x80 && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			sb.WriteByte('\\')
		}
		sb.WriteByte(c)
	}
	return sb.String()
}
