package imapmsg

import (
	"bytes"
	"strings"
	"testing"
)

const sampleHeader = "Return-Path: <a@example.org>\r\n" +
	"Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n" +
	"\tby mail.example.net with ESMTPS id 42\r\n" +
	"\tfor <b@example.net>; Mon, 7 Feb 1994 21:52:25 -0800\r\n" +
	"From: Alice <a@example.org>\r\n" +
	"To: b@example.net,\r\n" +
	" c@example.net\r\n" +
	"Subject: =?utf-8?q?caf=C3=A9?=\r\n" +
	"X-Spam: no\r\n" +
	"Received: from localhost\r\n" +
	"\r\n"

func TestFilterHeader(t *testing.T) {
	tests := []struct {
		name   string
		header string
		fields []string
		not    bool
		want   string
	}{
		{
			name: "folded fields keep their continuation lines", header: sampleHeader,
			fields: []string{"TO", "subject"},
			want:   "To: b@example.net,\r\n c@example.net\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n",
		},
		{
			name: "every instance of a repeated field, in order", header: sampleHeader,
			fields: []string{"received"},
			want: "Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n" +
				"\tby mail.example.net with ESMTPS id 42\r\n" +
				"\tfor <b@example.net>; Mon, 7 Feb 1994 21:52:25 -0800\r\n" +
				"Received: from localhost\r\n\r\n",
		},
		{
			name: "NOT", header: sampleHeader, fields: []string{"Received", "Return-Path", "X-Spam"}, not: true,
			want: "From: Alice <a@example.org>\r\nTo: b@example.net,\r\n c@example.net\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n",
		},
		{
			name: "NOT nothing gives the whole header", header: sampleHeader, fields: []string{"X-None"}, not: true,
			want: sampleHeader,
		},
		{
			name: "no match gives only the blank line", header: sampleHeader, fields: []string{"Cc"},
			want: "\r\n",
		},
		{
			name: "exact name match, no prefixes", header: "From-X: 1\r\nFrom: 2\r\nFro: 3\r\n\r\n",
			fields: []string{"From"}, want: "From: 2\r\n\r\n",
		},
		{
			name: "white space before the colon (RFC 5322 §4.5.4 obs-optional)", header: "Subject : x\r\nSubject\t: y\r\n\r\n",
			fields: []string{"subject"}, want: "Subject : x\r\nSubject\t: y\r\n\r\n",
		},
		{
			name: "body after the blank line is ignored", header: "A: 1\r\n\r\nA: 2\r\n",
			fields: []string{"A"}, want: "A: 1\r\n\r\n",
		},
		{
			name: "missing blank line and final line break", header: "A: 1\r\nB: 2",
			fields: []string{"b"}, want: "B: 2\r\n\r\n",
		},
		{
			name: "final bare CR", header: "A: 1\r\nB: 2\r",
			fields: []string{"B"}, want: "B: 2\r\n\r\n",
		},
		{
			name: "LF-only lines are kept as stored", header: "A: 1\nB: 2\n c\n\nA: body\n",
			fields: []string{"B"}, want: "B: 2\n c\n\r\n",
		},
		{
			name: "leading continuation belongs to no field (NOT keeps it)", header: " orphan\r\nA: 1\r\n\r\n",
			fields: []string{"A"}, not: true, want: " orphan\r\n\r\n",
		},
		{
			name: "leading continuation is never a match", header: " orphan\r\nA: 1\r\n\r\n",
			fields: []string{"A", ""}, want: "A: 1\r\n\r\n",
		},
		{
			name: "line without colon is a field of its own", header: "garbage line\r\nA: 1\r\n\r\n",
			fields: []string{"A"}, not: true, want: "garbage line\r\n\r\n",
		},
		{
			name: "empty header", header: "", fields: []string{"A"}, want: "\r\n",
		},
		{
			name: "only the blank line", header: "\r\n", fields: []string{"A"}, not: true, want: "\r\n",
		},
		{
			name: "no fields", header: sampleHeader, fields: nil, want: "\r\n",
		},
		{
			name: "8-bit names and values pass through", header: "X-Ä: ü\r\nB: 2\r\n\r\n",
			fields: []string{"x-Ä"}, want: "X-Ä: ü\r\n\r\n",
		},
		{
			name: "empty field name (\":x\") matches an empty requested name", header: ":x\r\nB: 2\r\n\r\n",
			fields: []string{""}, want: ":x\r\n\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(FilterHeader([]byte(tc.header), tc.fields, tc.not))
			if got != tc.want {
				t.Errorf("\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestFilterHeaderLarge(t *testing.T) {
	// A long header (many fields, one huge folded field) is processed in
	// one pass; the result is exact.
	var h bytes.Buffer
	for range 20000 {
		h.WriteString("X-Trace: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")
	}
	h.WriteString("Subject: start\r\n")
	for range 20000 {
		h.WriteString(" more\r\n")
	}
	h.WriteString(strings.Repeat("N", 1<<20) + ": long name\r\n\r\n")
	got := FilterHeader(h.Bytes(), []string{"subject"}, false)
	want := "Subject: start\r\n" + strings.Repeat(" more\r\n", 20000) + "\r\n"
	if string(got) != want {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
	got = FilterHeader(h.Bytes(), []string{"X-Trace", "Subject"}, true)
	if !bytes.HasPrefix(got, []byte("NNNN")) || len(got) != 1<<20+len(": long name\r\n\r\n") {
		t.Fatalf("NOT: %d bytes", len(got))
	}
}
