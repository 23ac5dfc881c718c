package msgparse

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPathological runs hostile shapes that could cost quadratic time and
// checks each completes quickly and keeps the invariants.
func TestPathological(t *testing.T) {
	var nest strings.Builder
	for i := 0; i < MaxDepth; i++ {
		fmt.Fprintf(&nest, "Content-Type: multipart/mixed; boundary=b%02d\r\n\r\n--b%02d\r\n", i, i)
	}
	nest.WriteString("\r\n" + strings.Repeat("--b0\r\n--b\r\n--x\r\n", 50000))
	cases := map[string]string{
		"boundary look-alikes under deep nesting": nest.String(),
		"long address header":                     "To: " + strings.Repeat("a@b, ", 50000) + "\r\n\r\n",
		"group soup":                              "To: " + strings.Repeat("g:a@b;<:>@,", 20000) + "\r\n\r\n",
		"nested comments":                         "From: " + strings.Repeat("(", 100000) + "\r\nContent-Type: text/plain" + strings.Repeat("(", 100000) + "\r\n\r\n",
		"encoded words":                           "Subject: " + strings.Repeat("=?utf-8?q?a?= ", 18000) + "\r\n\r\n",
		"params":                                  "Content-Type: text/plain" + strings.Repeat("; a*1*=%41", 20000) + "\r\n\r\n",
		"many parts":                              "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + strings.Repeat("--b\r\nContent-Type: text/html; charset=koi8-r\r\n\r\n<a&#\r\n", 5000),
		"long header line":                        "X: " + strings.Repeat("x", 3*MaxHeaderBytes) + "\r\n\r\nbody",
		"many header lines":                       strings.Repeat("X: y\r\n", 100000) + "\r\nbody",
		"many message levels":                     strings.Repeat("Content-Type: message/rfc822\r\n\r\n", 10000),
		"cr storm":                                strings.Repeat("\r", 1<<20) + "\n",
		"html tags":                               "Content-Type: text/html\r\n\r\n" + strings.Repeat("<script><!--<style>&#99999999;&", 30000),
	}
	for name, msg := range cases {
		start := time.Now()
		m := parseString(t, msg)
		d := time.Since(start)
		t.Logf("%s: %d octets in %v", name, len(msg), d)
		if d > 5*time.Second {
			t.Errorf("%s: %v", name, d)
		}
		checkInvariants(t, m)
	}
}
