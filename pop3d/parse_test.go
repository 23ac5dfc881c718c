package pop3d_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/postrider/postrider/pop3d"
)

func TestParseCommand(t *testing.T) {
	cases := []struct {
		in   string
		want pop3d.Command
		err  error
	}{
		{"QUIT", pop3d.Command{Name: "QUIT"}, nil},
		{"quit", pop3d.Command{Name: "QUIT"}, nil},
		{"utf8", pop3d.Command{Name: "UTF8"}, nil},
		{"RETR 1", pop3d.Command{Name: "RETR", Args: []string{"1"}, Rest: "1"}, nil},
		{"TOP 1 10", pop3d.Command{Name: "TOP", Args: []string{"1", "10"}, Rest: "1 10"}, nil},
		{"LIST ", pop3d.Command{Name: "LIST", Rest: ""}, nil},
		{"TOP  1  2", pop3d.Command{Name: "TOP", Args: []string{"1", "2"}, Rest: " 1  2"}, nil},
		{"PASS a b  c d e f", pop3d.Command{Name: "PASS", Args: []string{"a", "b", "c", "d"}, Rest: "a b  c d e f"}, nil},
		{"PASS pässwörd", pop3d.Command{Name: "PASS", Args: []string{"pässwörd"}, Rest: "pässwörd"}, nil},
		{"AUTH PLAIN AGFsaWNlAHB3", pop3d.Command{Name: "AUTH", Args: []string{"PLAIN", "AGFsaWNlAHB3"}, Rest: "PLAIN AGFsaWNlAHB3"}, nil},
		{"", pop3d.Command{}, pop3d.ErrEmptyLine},
		{"QU", pop3d.Command{}, pop3d.ErrBadKeyword},
		{"QUITS", pop3d.Command{}, pop3d.ErrBadKeyword},
		{"1TOP", pop3d.Command{}, pop3d.ErrBadKeyword},
		{" QUIT", pop3d.Command{}, pop3d.ErrBadKeyword},
		{"QU-T", pop3d.Command{}, pop3d.ErrBadKeyword},
		{"QUIT\t", pop3d.Command{}, pop3d.ErrBadChar},
		{"USER a\x00b", pop3d.Command{}, pop3d.ErrBadChar},
		{"USER a\rb", pop3d.Command{}, pop3d.ErrBadChar},
		{"USER \xc3", pop3d.Command{}, pop3d.ErrBadChar},
		{"USER \x7f", pop3d.Command{}, pop3d.ErrBadChar},
		{"TOP 1 2 3 4 5", pop3d.Command{}, pop3d.ErrTooMany},
		{"USER " + strings.Repeat("a", 248), pop3d.Command{Name: "USER", Args: []string{strings.Repeat("a", 248)}, Rest: strings.Repeat("a", 248)}, nil},
		{"USER " + strings.Repeat("a", 249), pop3d.Command{}, pop3d.ErrLineTooLong},
	}
	for _, c := range cases {
		got, err := pop3d.ParseCommand(c.in)
		if !errors.Is(err, c.err) {
			t.Errorf("%q: error %v, want %v", c.in, err, c.err)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %+v, want %+v", c.in, got, c.want)
		}
	}
}

// FuzzParseCommand runs the command parser on arbitrary lines, seeded with
// real client commands (fetchmail, curl, Thunderbird, Outlook, poplib).
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"CAPA", "USER alice@example.org", "PASS secret with spaces", "STAT", "LIST", "LIST 1",
		"UIDL", "UIDL 12", "RETR 1", "TOP 1 0", "TOP 3 20", "DELE 1", "RSET", "NOOP", "QUIT",
		"STLS", "UTF8", "AUTH", "AUTH PLAIN", "AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHB3", "AUTH LOGIN",
		"APOP mrose c4c9334bac560ecc979e58001b3e22fb", "XTND XMIT", "LAST", "GET / HTTP/1.1",
		"PROXY TCP4 192.0.2.1 127.0.0.1 1 2", "USER \xff", "list  1 ", "\x16\x03\x01",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := pop3d.ParseCommand(line)
		if err != nil {
			if !reflect.DeepEqual(c, pop3d.Command{}) {
				t.Fatalf("error %v with a non-zero command %+v", err, c)
			}
			return
		}
		if len(line) > pop3d.MaxLineLength-2 || !utf8.ValidString(line) {
			t.Fatalf("accepted an invalid line %q", line)
		}
		if len(c.Name) < 3 || len(c.Name) > 4 || c.Name != strings.ToUpper(c.Name) {
			t.Fatalf("bad name %q", c.Name)
		}
		if !strings.EqualFold(line[:len(c.Name)], c.Name) {
			t.Fatalf("name %q is not the line's keyword in %q", c.Name, line)
		}
		if len(c.Args) > pop3d.MaxArgs {
			t.Fatalf("%d args", len(c.Args))
		}
		for _, a := range c.Args {
			if a == "" || strings.ContainsAny(a, " \r\n\x00") || !strings.Contains(c.Rest, a) {
				t.Fatalf("bad arg %q in %+v", a, c)
			}
		}
		if c.Rest != "" && line != line[:len(c.Name)]+" "+c.Rest {
			t.Fatalf("Rest %q does not end the line %q", c.Rest, line)
		}
		// Parsing is deterministic and case-insensitive in the keyword.
		again, err := pop3d.ParseCommand(strings.ToLower(line[:len(c.Name)]) + line[len(c.Name):])
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("reparse: %+v, %v; want %+v", again, err, c)
		}
	})
}
