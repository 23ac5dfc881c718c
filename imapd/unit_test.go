package imapd

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

func TestMUTF7(t *testing.T) {
	for _, tc := range []struct{ utf8, mutf7 string }{
		{"INBOX", "INBOX"},
		{"Ärger", "&AMQ-rger"},
		{"Tom & Jerry", "Tom &- Jerry"},
		{"☺!", "&Jjo-!"},
		{"日本語/テスト", "&ZeVnLIqe-/&MMYwuTDI-"},
		{"𝄞", "&2DTdHg-"},
	} {
		if got := encodeMUTF7(tc.utf8); got != tc.mutf7 {
			t.Errorf("encode %q = %q, want %q", tc.utf8, got, tc.mutf7)
		}
		if got, err := decodeMUTF7(tc.mutf7); err != nil || got != tc.utf8 {
			t.Errorf("decode %q = %q, %v", tc.mutf7, got, err)
		}
	}
	for _, bad := range []string{"&AGE-", "&", "&Jjo", "&2DQ-", "&Jjo!-"} {
		if got, err := decodeMUTF7(bad); err == nil {
			t.Errorf("decode %q = %q, want error", bad, got)
		}
	}
}

func TestPatternMatch(t *testing.T) {
	for _, tc := range []struct {
		pat, name string
		want      bool
	}{
		{"*", "a/b/c", true},
		{"%", "a/b", false},
		{"%", "a", true},
		{"a/%", "a/b", true},
		{"a/%", "a/b/c", false},
		{"a/*", "a/b/c", true},
		{"%/%", "a/b", true},
		{"*c", "a/b/c", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"inbox", "INBOX", true},
		{"InBox/%", "INBOX/x", true},
		{"inboxes", "INBOX", false},
		{"Inbox", "Inbox", false}, // only INBOX itself is case-insensitive
		{"%b%", "abc", true},
		{"", "", true},
	} {
		p, err := compilePattern(tc.pat)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.match(tc.name); got != tc.want {
			t.Errorf("match(%q, %q) = %v", tc.pat, tc.name, got)
		}
	}
}

func TestTrailingLiteral(t *testing.T) {
	for _, tc := range []struct {
		line string
		lit  literal
		ok   bool
	}{
		{"a LOGIN {5}", literal{n: 5, sync: true}, true},
		{"a LOGIN {5+}", literal{n: 5}, true},
		{"a APPEND x ~{12+}", literal{n: 12, binary: true}, true},
		{"a LOGIN x", literal{}, false},
		{`a LOGIN "{5}"`, literal{}, false},
		{"a X {}", literal{}, false},
		{"a X {1a}", literal{}, false},
		{"a X {99999999999999999999+}", literal{n: 1<<63 - 1}, true},
	} {
		l, ok := trailingLiteral([]byte(tc.line))
		if ok != tc.ok || (ok && l != tc.lit) {
			t.Errorf("%q: %+v %v", tc.line, l, ok)
		}
	}
}

func TestFormatAndNormalize(t *testing.T) {
	if got := formatUIDs([]uint32{1, 2, 3, 5, 7, 8}); got != "1:3,5,7:8" {
		t.Error(got)
	}
	got := normalize(mailstore.UIDSet{{Start: 5, Stop: 9}, {Start: 1, Stop: 2}, {Start: 3, Stop: 4}, {Start: 20, Stop: 30}, {Start: 8, Stop: 12}})
	want := mailstore.UIDSet{{Start: 1, Stop: 12}, {Start: 20, Stop: 30}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("normalize = %v", got)
	}
	s := &selected{}
	for _, u := range []uint32{2, 4, 6, 8, 10} {
		kw := []string{}
		if u == 4 || u == 6 {
			kw = append(kw, fmt.Sprintf("$K%d", u))
		}
		s.add(mailstore.MessageMeta{UID: u, ModSeq: uint64(u), Flags: mailstore.Flags{Keywords: kw}})
	}
	if got := s.indexesIn(mailstore.UIDSet{{Start: 3, Stop: 6}, {Start: 9, Stop: 0}}); !reflect.DeepEqual(got, []int{1, 2, 4}) {
		t.Errorf("indexesIn = %v", got)
	}
	if got := s.indexesIn(mailstore.UIDSet{{Start: 11, Stop: 0}, {Start: 1, Stop: 1}}); len(got) != 0 {
		t.Errorf("indexesIn beyond the view = %v", got)
	}
	if seqs := s.remove([]uint32{4, 10, 99}); !reflect.DeepEqual(seqs, []uint32{5, 2}) || !reflect.DeepEqual(s.uids(), []uint32{2, 6, 8}) {
		t.Errorf("remove = %v, uids %v", seqs, s.uids())
	}
	if len(s.kws) != 1 || !reflect.DeepEqual(s.meta(1).Flags.Keywords, []string{"$K6"}) || s.meta(1).ModSeq != 6 {
		t.Errorf("keywords after remove: %v, message 2 %+v", s.kws, s.meta(1))
	}
	if !inSet(mailstore.UIDSet{{Start: 1, Stop: 3}, {Start: 7, Stop: 0}}, 100) || inSet(mailstore.UIDSet{{Start: 1, Stop: 3}, {Start: 7, Stop: 9}}, 5) {
		t.Error("inSet")
	}
}

func TestNonulReader(t *testing.T) {
	b, _ := io.ReadAll(nonulReader{strings.NewReader("\x00a\x00\x00b\x00")})
	if string(b) != "\x80a\x80\x80b\x80" {
		t.Fatalf("%q", b)
	}
}
