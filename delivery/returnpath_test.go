package delivery

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestStripReturnPath(t *testing.T) {
	long := "Return-Path: <" + strings.Repeat("x", 5000) + "@example.test>\r\nSubject: s\r\n\r\nbody\r\n"
	for _, tc := range []struct{ in, want string }{
		{"Return-Path: <a@example.test>\r\nReceived: from x\r\nSubject: s\r\n\r\nbody\r\n", "Received: from x\r\nSubject: s\r\n\r\nbody\r\n"},
		{"return-path: <>\r\nSubject: s\r\n\r\nb\r\n", "Subject: s\r\n\r\nb\r\n"},
		{"Return-Path: <a@example.test>\r\nReturn-Path: <b@example.test>\r\nSubject: s\r\n\r\n", "Subject: s\r\n\r\n"},
		{"Return-Path:\r\n <folded@example.test>\r\nSubject: s\r\n\r\n", "Subject: s\r\n\r\n"},
		{"Subject: s\r\nReturn-Path: <a@example.test>\r\n\r\nbody\r\n", "Subject: s\r\nReturn-Path: <a@example.test>\r\n\r\nbody\r\n"},
		{"Subject: s\r\n\r\nReturn-Path: in the body\r\n", "Subject: s\r\n\r\nReturn-Path: in the body\r\n"},
		{"Return-Path: <a@example.test>", "Return-Path: <a@example.test>"}, // no line end: left alone
		{"Return-Pat", "Return-Pat"},
		{"", ""},
		{long, long}, // longer than the bound: left alone
	} {
		for name, r := range map[string]io.Reader{
			"whole":     strings.NewReader(tc.in),
			"one byte":  iotest.OneByteReader(strings.NewReader(tc.in)),
			"in memory": &memBody{Reader: bytes.NewReader([]byte(tc.in)), b: []byte(tc.in)},
		} {
			got, err := io.ReadAll(stripReturnPath(r))
			if err != nil || string(got) != tc.want {
				t.Errorf("%s %.40q: got %.60q, %v; want %.60q", name, tc.in, got, err, tc.want)
			}
		}
	}
	// A read error is passed on, never taken for the end of the message.
	r := io.MultiReader(strings.NewReader("Return-Path: <a@example.test>\r\nSubject: s\r\n"), iotest.ErrReader(io.ErrUnexpectedEOF))
	if _, err := io.ReadAll(stripReturnPath(r)); err != io.ErrUnexpectedEOF {
		t.Errorf("read error: got %v", err)
	}
}

func FuzzStripReturnPath(f *testing.F) {
	f.Add([]byte("Return-Path: <a@example.test>\r\nSubject: s\r\n\r\nbody\r\n"))
	f.Add([]byte("Return-Path:\r\n <x>\r\n\tmore\r\nX: y\r\n"))
	f.Add([]byte("Subject: s\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := io.ReadAll(stripReturnPath(bytes.NewReader(in)))
		if err != nil {
			t.Fatal(err)
		}
		// Only a prefix is ever removed, and what is left never starts
		// with a Return-Path: field that ends within the bound.
		if !bytes.HasSuffix(in, got) {
			t.Fatalf("output is not a suffix of the input")
		}
		if len(got) < len(in) && !bytes.HasPrefix(bytes.ToLower(in), []byte("return-path:")) {
			t.Fatalf("stripped a message that does not start with Return-Path:")
		}
		// A message in memory loses the same prefix.
		mem, err := io.ReadAll(stripReturnPath(&memBody{Reader: bytes.NewReader(in), b: in}))
		if err != nil || !bytes.Equal(mem, got) {
			t.Fatalf("in memory: %q, %v; streamed: %q", mem, err, got)
		}
	})
}
