package smtpd_test

import (
	"strings"
	"testing"
)

// TestSubmissionIdentity: on both submission ports every originator field
// (From:, Sender:, Resent-From:, Resent-Sender:) must name only addresses
// alice owns (her own, +tags, the aliases sales and list), and no display
// name may show an address she does not own. A refusal is 553 5.7.1 and
// names the field.
func TestSubmissionIdentity(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		header string
		field  string // "" accepted; else the field the 553 reply names
	}{
		// Refused.
		{"From: alice@example.org\r\nSender: bob@example.org\r\n", "Sender:"},
		{"Sender: alice@example.org\r\nFrom: alice@example.org\r\nResent-From: Bob <bob@example.org>\r\n", "Resent-From:"},
		{"From: alice@example.org\r\nResent-From: alice@example.org\r\nResent-From: alice@example.org, bob@example.org\r\n", "Resent-From:"},
		{"From: alice@example.org\r\nresent-sender:\r\n <bob@example.org>\r\n", "Resent-Sender:"},
		{"From: \"bob@example.org\" <alice@example.org>\r\n", "From:"},
		{"From: =?utf-8?q?bob=40example.test?= <alice@example.org>\r\n", "From:"},
		{"From: \"=?utf-8?q?bob=40example.test?=\" <alice@example.org>\r\n", "From:"},
		{"From: =?UTF-8?B?Qm9iIDxib2JAZXhhbXBsZS50ZXN0Pg==?= <alice@example.org>\r\n", "From:"}, // "Bob <bob@example.test>"
		{"From: alice@example.org (bob@example.org)\r\n", "From:"},
		{"From: \"bob\uff20example.test\" <alice@example.org>\r\n", "From:"},
		{"From: alice@example.org\r\nSender: \"Support (support@bank.example)\" <alice@example.org>\r\n", "Sender:"},
		{"From: alice@example.org\r\nResent-From: \"mailto:bob@example.org\" <sales@example.org>\r\n", "Resent-From:"},
		{"From: alice@example.org\r\nSender: alice@example.org\r\nSender: alice@example.org\r\n", "Sender:"},
		{"From: alice@example.org\r\nSender: alice@example.org, sales@example.org\r\n", "Sender:"},
		{"From: alice@example.org\r\nSender: <not an address\r\n", "Sender:"},
		{"From: =?utf-7?q?bob+AEA-example.test?= <alice@example.org>\r\n", "From:"},
		// Accepted.
		{"From: alice@example.org\r\nSender: Sales <sales@example.org>\r\n", ""},
		{"From: \"alice@example.org\" <alice@example.org>\r\n", ""},
		{"From: \"ALICE+x@Example.org\" <alice@example.org>\r\nSender: \"sales@example.org\" <sales@example.org>\r\n", ""},
		{"From: \"Sales (sales@example.org)\" <alice@example.org>\r\n", ""},
		{"From: =?utf-8?q?Alice_Liddell?= <alice@example.org>\r\nResent-From: =?utf-8?q?Alice_at_home?= <alice@example.org>\r\nResent-Sender: list@example.org\r\n", ""},
		{"From: \"Alice @ Home\" <alice@example.org>\r\n", ""},
		{"From: \"Team @Work, R&D\" <alice@example.org>, Sales <sales@example.org>\r\n", ""},
		{"From: alice@example.org (Alice, mobile)\r\n", ""},
	}
	accepted := 0
	for _, port := range []string{"587", "465"} {
		var c *client
		if port == "587" {
			c = dial(t, e.submission)
		} else {
			c = dialTLS(t, e.submissions)
		}
		c.ehlo("client.example")
		c.login("alice@example.org", alicePass)
		for _, tc := range cases {
			c.cmd("MAIL FROM:<alice@example.org>", 250)
			c.cmd("RCPT TO:<bob@example.org>", 250)
			c.cmd("DATA", 354)
			c.send(tc.header + "To: bob@example.org\r\nSubject: identity\r\n\r\nbody\r\n.\r\n")
			r, err := c.read()
			must(t, err)
			switch {
			case tc.field == "" && r.Code == 250:
				accepted++
			case tc.field == "":
				t.Errorf("port %s: %q refused: %v", port, tc.header, r)
			case r.Code != 553 || !strings.HasPrefix(r.Lines[0], "5.7.1 ") || !strings.Contains(r.Lines[0], tc.field):
				t.Errorf("port %s: %q: got %v, want 553 5.7.1 naming %s", port, tc.header, r, tc.field)
			}
		}
		c.cmd("QUIT", 221)
	}
	if n := len(e.inbox(e.bob)); n != accepted {
		t.Errorf("bob has %d messages, want %d (the accepted ones)", n, accepted)
	}
}
