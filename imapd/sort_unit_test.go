package imapd

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/msgparse"
)

// RFC 5256 §2.1 base-subject extraction.
func TestBaseSubject(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		reply    bool
	}{
		{"", "", false},
		{"hello", "hello", false},
		{"Re: hello", "hello", true},
		{"RE:hello", "hello", true},
		{"re: Re: RE: hello", "hello", true},
		{"Fw: hello", "hello", true},
		{"FWD: hello", "hello", true},
		{"Re [2]: hello", "hello", true},
		{"Re[PATCH v2]: hello", "hello", true},
		{"[list] hello", "hello", false},
		{"[list] [other] hello", "hello", false},
		{"[list] Re: hello", "hello", true},
		{"Re: [list] Re: [x] hello", "hello", true},
		{"[list]", "[list]", false},
		{"Re: [list]", "[list]", true},
		{"[a] [b]", "[b]", false},
		{"hello (fwd)", "hello", true},
		{"hello (FWD) (fwd)  ", "hello", true},
		{"(fwd)", "", true},
		{"[fwd: hello]", "hello", true},
		{"Fwd: [fwd: Re: hello] (fwd)", "hello", true},
		{"[Fwd: [fwd: hello]]", "hello", true},
		{"[fwd: hello", "[fwd: hello", false},
		{"Reply: hello", "Reply: hello", false},
		{"Re hello", "Re hello", false},
		{"Fwd hello", "Fwd hello", false},
		{"  many\t \r\n spaces   here  ", "many spaces here", false},
		{"Re: hello [x]", "hello [x]", true},
		{"=?utf-8?q?Re=3A_caf=C3=A9?=", "café", true},
		{"=?iso-8859-1?q?R=E9sum=E9?= =?utf-8?b?IChmd2Qp?=", "Résumé", true},
		{"[=?utf-8?q?liste?=] =?utf-8?q?=C3=A9t=C3=A9?=", "été", false},
		{"=?bogus?q?x?=", "=?bogus?q?x?=", false},
	} {
		got, reply := baseSubject(tc.in)
		if got != tc.want || reply != tc.reply {
			t.Errorf("baseSubject(%q) = %q, %v; want %q, %v", tc.in, got, reply, tc.want, tc.reply)
		}
	}
}

// i;ascii-casemap (RFC 4790 §9.2): only ASCII letters fold.
func TestCasemap(t *testing.T) {
	for in, want := range map[string]string{"abc": "ABC", "ABC": "ABC", "Émile é": "ÉMILE é", "a_z": "A_Z", "": ""} {
		if got := casemap(in, 100); got != want {
			t.Errorf("casemap(%q) = %q, want %q", in, got, want)
		}
	}
	if got := casemap("abcdef", 3); got != "ABC" {
		t.Errorf("limit: %q", got)
	}
}

// Message IDs of Message-ID, In-Reply-To and References (RFC 5322
// §3.6.4), as RFC 5256 §4 REFERENCES uses them.
func TestMsgIDs(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  []string
	}{
		{"<a@b>", 1, []string{"a@b"}},
		{"  <a@b>  <c@d>", 10, []string{"a@b", "c@d"}},
		{"<a@b> <c@d>", 1, []string{"a@b"}},
		{"<a@b> <c@d> <e@f>", 2, []string{"c@d", "e@f"}},
		{"(comment <x@y>) <a@b>", 10, []string{"a@b"}},
		{"(nested (comment) <x@y>) <a@b>", 10, []string{"a@b"}},
		{"<a @ b>", 1, []string{"a@b"}},
		{"<no-at> <@b> <a@> <> <a@b", 10, nil},
		{"Your message of ... <a@b>", 1, []string{"a@b"}},
		{`<"quoted local"@b>`, 1, []string{`"quotedlocal"@b`}},
		{"<a<b@c>", 1, nil},
		{"", 1, nil},
	} {
		if got := msgIDs(tc.in, tc.limit); !slices.Equal(got, tc.want) {
			t.Errorf("msgIDs(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}

func TestHeaderField(t *testing.T) {
	hdr := []byte("From: a@b\r\nX-Ref: no\r\nReferences: <a@b>\r\n\t<c@d>\r\n <e@f>\r\nSubject: s\r\nreferences: <second@x>\r\n\r\n")
	if got := headerField(hdr, "references"); got != " <a@b>\t<c@d> <e@f>" {
		t.Errorf("References: %q", got)
	}
	if got := headerField(hdr, "subject"); got != " s" {
		t.Errorf("Subject: %q", got)
	}
	if got := headerField(hdr, "cc"); got != "" {
		t.Errorf("Cc: %q", got)
	}
}

// The thread-list grammar of RFC 5256 §5, checked on every output: each
// message appears exactly once.
func checkThreadOutput(t *testing.T, out string, nums []uint32) {
	t.Helper()
	seen := map[uint32]int{}
	i := 0
	var list func() bool
	number := func() (uint32, bool) {
		start := i
		var n uint64
		for i < len(out) && out[i] >= '0' && out[i] <= '9' {
			n = n*10 + uint64(out[i]-'0')
			i++
		}
		return uint32(n), i > start && n > 0 && n <= 1<<32-1
	}
	// thread-nested = 2*thread-list
	nested := func() bool {
		n := 0
		for i < len(out) && out[i] == '(' {
			if !list() {
				return false
			}
			n++
		}
		return n >= 2
	}
	// thread-list = "(" (thread-members / thread-nested) ")"
	// thread-members = nz-number *(SP nz-number) [SP thread-nested]
	list = func() bool {
		if i >= len(out) || out[i] != '(' {
			return false
		}
		i++
		if i < len(out) && out[i] == '(' {
			if !nested() {
				return false
			}
		} else {
			for {
				n, ok := number()
				if !ok {
					return false
				}
				seen[n]++
				if i < len(out) && out[i] == ' ' {
					i++
					if i < len(out) && out[i] == '(' {
						if !nested() {
							return false
						}
						break
					}
					continue
				}
				break
			}
		}
		if i >= len(out) || out[i] != ')' {
			return false
		}
		i++
		return true
	}
	for i < len(out) {
		if !list() {
			t.Fatalf("thread output %q: bad syntax at %d", out, i)
		}
	}
	want := map[uint32]int{}
	for _, n := range nums {
		want[n] = 1
	}
	if !maps.Equal(seen, want) {
		t.Fatalf("thread output %q names %v, want each of %v once", out, seen, nums)
	}
}

// fuzzThreadMsgs makes messages from fuzz input: one per line, fields
// "id|references|subject|date".
func fuzzThreadMsgs(data string) []threadMsg {
	var msgs []threadMsg
	for k, line := range strings.SplitN(data, "\n", 200) {
		f := strings.SplitN(line, "|", 4)
		for len(f) < 4 {
			f = append(f, "")
		}
		m := threadMsg{num: uint32(k + 1)}
		if ids := msgIDs(f[0], 1); len(ids) > 0 {
			m.id = ids[0]
		}
		m.refs = msgIDs(f[1], maxThreadRefs)
		subj, reply := baseSubject(f[2])
		m.subject, m.reply = casemap(subj, maxSortKeyBytes), reply
		if len(f[3]) > 0 {
			m.sent = int64(f[3][0]) * int64(time.Minute/time.Microsecond)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func threadString(threads []*threadNode) string {
	var b strings.Builder
	writeThreads(&b, threads)
	return b.String()
}

func TestThreadAlgorithmsShapes(t *testing.T) {
	// thread.mbox of imaptest: 2 references a missing <c> after <a>, 3
	// is <c> and references 2: the References loop is broken.
	msgs := fuzzThreadMsgs("<a@b>||a|\n<b@b>|<a@b> <c@b>|b|\n<c@b>|<b@b>|c|")
	if got := threadString(threadReferences(msgs)); got != "(1)(3 2)" {
		t.Errorf("loop: %q", got) // dates tie: sequence order
	}
	// A chain that references each ancestor.
	var b strings.Builder
	refs := ""
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&b, "<m%d@x>|%s|s|%c\n", i, refs, 'a'+i%20)
		refs += fmt.Sprintf(" <m%d@x>", i)
	}
	msgs = fuzzThreadMsgs(strings.TrimSuffix(b.String(), "\n"))
	out := threadString(threadReferences(msgs))
	checkThreadOutput(t, out, nums(len(msgs)))
	if strings.Count(out, "(") != 1 {
		t.Errorf("a chain is one flat thread: %q", out)
	}
}

func nums(n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(i + 1)
	}
	return out
}

// FuzzThreadAlgorithms runs both algorithms on arbitrary messages: every
// message appears once, in valid thread-list syntax, whatever the
// references (loops, self-references, duplicates, missing parents).
func FuzzThreadAlgorithms(f *testing.F) {
	f.Add("<a@b>||x|\n<b@b>|<a@b> <c@b>|Re: x|\n<c@b>|<b@b>|x|")
	f.Add("<a@b>||foo|\n<a@b>||Re: foo|")
	f.Add("|<a@b>|s|1\n|<a@b>|s|2\n<a@b>|<b@b>|t|0\n<b@b>|<a@b>|Re: t|3")
	f.Add("<x@y>|<x@y> <x@y>|[fwd: a]|\n<z@y>|<q@y> <x@y> <z@y>|a (fwd)|\n||a|\n||Re: a|")
	f.Fuzz(func(t *testing.T, data string) {
		msgs := fuzzThreadMsgs(data)
		checkThreadOutput(t, threadString(threadReferences(msgs)), nums(len(msgs)))
		checkThreadOutput(t, threadString(threadOrderedSubject(msgs)), nums(len(msgs)))
	})
}

// FuzzBaseSubject: any subject, encoded words included, gives a valid
// result at once: no leading or trailing space, no longer than the
// decoded input, and extracting again changes nothing (when the result
// holds no encoded word to decode again).
func FuzzBaseSubject(f *testing.F) {
	for _, s := range []string{"Re: [list] Fwd: hello (fwd)", "[fwd: [fwd: x]]", "=?utf-8?q?Re=3A_x?=", "[a][b][c]", "Re[x]:Re[y]: z", "\t(fwd) (FWD)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		base, _ := baseSubject(s)
		if strings.HasPrefix(base, " ") || strings.HasSuffix(base, " ") {
			t.Fatalf("baseSubject(%q) = %q: spaces at an end", s, base)
		}
		if utf8.ValidString(s) && !strings.Contains(s, "=?") && len(base) > len(s) {
			t.Fatalf("baseSubject(%q) = %q: longer", s, base)
		}
		if !strings.Contains(base, "=?") && utf8.ValidString(base) {
			if again, _ := baseSubject(base); again != base {
				t.Fatalf("baseSubject(%q) = %q, then %q", s, base, again)
			}
		}
	})
}

// FuzzSortThreadCommand runs SORT, UID SORT, THREAD and UID THREAD with
// arbitrary arguments through the real command loop (the argument
// parsers, the search program, key loading and threading): no panic, no
// hang.
func FuzzSortThreadCommand(f *testing.F) {
	for _, s := range []string{
		"(ARRIVAL) UTF-8 ALL", "(REVERSE DATE SUBJECT REVERSE SIZE) US-ASCII UNSEEN", "RETURN (MIN MAX COUNT ALL SAVE) (DISPLAYFROM) UTF-8 $",
		"RETURN () (REVERSE DISPLAYTO CC TO FROM) utf-8 OR (FROM {3}\r\nbob) 1:5", "(DATE) KOI8-R ALL", "((DATE)) UTF-8 ALL", "() UTF-8 ALL",
		"REFERENCES UTF-8 ALL", "ORDEREDSUBJECT US-ASCII SUBJECT x", "REFERENCES UTF-8 MODSEQ 5", "(ARRIVAL) UTF-8 MODSEQ 5",
		"RETURN (PARTIAL -1:-2 MIN) (SIZE) UTF-8 ALL", "RETURN (UPDATE PARTIAL 2:1) (REVERSE FROM) UTF-8 ALL", "RETURN (PARTIAL 1:*) (DATE) UTF-8 ALL",
	} {
		f.Add(byte(0), s)
	}
	f.Fuzz(func(t *testing.T, which byte, args string) {
		cmd := []string{"a SORT ", "a UID SORT ", "a THREAD ", "a UID THREAD "}[which%4]
		done := make(chan struct{})
		go func() {
			defer close(done)
			runCommandsOn(t, sortFuzzStore{}, []byte(cmd+args+"\r\nb NOOP\r\n"), stateSelected, io.Discard)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			panic(fmt.Sprintf("hang on %q", cmd+args))
		}
	})
}

// sortFuzzStore finds some of the fuzz view's messages on every search
// and gives them parsed contents, so that fuzzed SORT and THREAD commands
// load keys and thread: some contents hold their header, one must be read
// with OpenMessage, one is gone.
type sortFuzzStore struct{ fuzzStore }

var sortFuzzContents = func() map[uint32]mailstore.MessageContent {
	raw := map[uint32]string{
		1: sortMsg{from: "A <a@x>", to: "g: b@x, c@x;", subject: "Re: [l] s (fwd)", id: "<1@x>", date: "Fri, 01 Mar 2024 10:00:00 +0000"}.String(),
		3: sortMsg{from: "b@x", cc: "=?utf-8?q?=C3=89?= <e@x>", subject: "s", id: "<3@x>", refs: "<1@x> <5@x>"}.String(),
		5: sortMsg{subject: "[fwd: s]", id: "<5@x>", refs: "<3@x>", inReplyTo: "<1@x>"}.String(),
		7: sortMsg{subject: "t", id: "<1@x>", refs: "<7@x>"}.String(), // header read with OpenMessage
		9: sortMsg{subject: "=?bogus?q?x?=", inReplyTo: "<9@x> <1@x>"}.String(),
	}
	out := map[uint32]mailstore.MessageContent{}
	for u, m := range raw {
		pm, err := msgparse.Parse(strings.NewReader(m))
		if err != nil {
			panic(err)
		}
		mc := mailstore.MessageContent{ContentID: int64(u), Size: int64(len(m)), Parsed: pm, Data: []byte(m)}
		if u == 7 {
			mc.Data = nil
		}
		out[u] = mc
	}
	return out
}()

func (sortFuzzStore) Search(context.Context, int64, int64, *mailstore.SearchCriteria) ([]uint32, error) {
	return []uint32{1, 3, 5, 7, 9, 11}, nil // 11: expunged meanwhile
}

func (sortFuzzStore) MessageContents(_ context.Context, _, _ int64, refs []mailstore.ContentRef) ([]mailstore.MessageContent, error) {
	out := make([]mailstore.MessageContent, len(refs))
	for i, r := range refs {
		out[i] = sortFuzzContents[r.UID]
	}
	return out, nil
}

func (sortFuzzStore) OpenMessage(_ context.Context, _, _ int64, uid uint32, off, n int64) (io.ReadCloser, error) {
	if uid != 7 {
		return nil, mailstore.ErrNoSuchMessage
	}
	m := sortMsg{subject: "t", id: "<1@x>", refs: "<7@x>"}.String()
	return io.NopCloser(strings.NewReader(m[min(off, int64(len(m))):min(int64(len(m)), off+n)])), nil
}

// TestSortFuzzStore checks what the fuzz target's store makes SORT and
// THREAD answer, so that the fuzzer starts from commands that reach the
// sorting and threading.
func TestSortFuzzStore(t *testing.T) {
	var out strings.Builder
	runCommandsOn(t, sortFuzzStore{}, []byte("a SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\nb UID THREAD REFERENCES UTF-8 ALL\r\nc THREAD ORDEREDSUBJECT UTF-8 ALL\r\nd SORT RETURN (ALL) (DISPLAYTO) UTF-8 ALL\r\n"), stateSelected, &out)
	// UID 11 was expunged meanwhile: empty keys, the internal date (here
	// zero, as are those of the messages without Date) as its sent date.
	// In the threads, 5 and 3 reference each other (5's References wins
	// for 5: 3 is its child), 7 duplicates 1's ID, 9's In-Reply-To names
	// a missing parent; 1 and 5 have the same base subject, both replies:
	// a dummy takes them.
	want := "* SORT 6 5 1 2 3 4\r\na OK SORT completed\r\n" +
		"* THREAD ((5 3)(1))(7)(9)(11)\r\nb OK UID THREAD completed\r\n" +
		"* THREAD (2 (3)(1))(4)(5)(6)\r\nc OK THREAD completed\r\n" +
		"* ESEARCH (TAG \"d\") ALL 2:6,1\r\nd OK SORT completed\r\n"
	if out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
}
