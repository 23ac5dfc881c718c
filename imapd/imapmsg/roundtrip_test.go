package imapmsg

import (
	"bufio"
	"bytes"
	"fmt"
	"mime"
	"net"
	netmail "net/mail"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/mail"

	"github.com/postrider/postrider/mailstore/msgparse"
)

// fetchServer is a minimal IMAP responder on 127.0.0.1: it greets, answers
// the n-th command with "* 1 FETCH (<items[n]>)" and a tagged OK. It lets a
// real IMAP client (go-imap v2's imapclient) parse what this package writes.
func fetchServer(t *testing.T, items []string) net.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(conn)
		fmt.Fprint(conn, "* OK [CAPABILITY IMAP4rev1] test server\r\n")
		for n := 0; ; n++ {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			tag, _, _ := strings.Cut(line, " ")
			if n < len(items) {
				fmt.Fprintf(conn, "* 1 FETCH (%s)\r\n%s OK done\r\n", items[n], tag)
			} else {
				fmt.Fprintf(conn, "* BYE\r\n%s OK done\r\n", tag)
				return
			}
		}
	}()
	return ln.Addr()
}

var wordDecoder mime.WordDecoder

func decodeWords(s string) string {
	out, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return out
}

// expectedParams is how imapclient reads body-fld-param.
func expectedParams(ps []msgparse.Param, defaultCharset bool) map[string]string {
	if len(ps) == 0 && !defaultCharset {
		return nil
	}
	m := map[string]string{}
	for _, p := range ps {
		m[strings.ToLower(p.Name)] = decodeWords(p.Value)
		if strings.EqualFold(p.Name, "charset") {
			defaultCharset = false
		}
	}
	if defaultCharset {
		m["charset"] = "us-ascii"
	}
	return m
}

func expectedDisposition(p *msgparse.Part) *imap.BodyStructureDisposition {
	if p.Disposition == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: p.Disposition, Params: expectedParams(p.DispositionParams, false)}
}

// expectedBody is the imap.BodyStructure that a client should read for p.
func expectedBody(p *msgparse.Part, extended bool) imap.BodyStructure {
	if isMultipart(p) {
		mp := &imap.BodyStructureMultiPart{Subtype: p.Subtype}
		for i := range p.Parts {
			mp.Children = append(mp.Children, expectedBody(&p.Parts[i], extended))
		}
		if extended {
			mp.Extended = &imap.BodyStructureMultiPartExt{Params: expectedParams(p.Params, false),
				Disposition: expectedDisposition(p), Language: p.Language, Location: p.Location}
		}
		return mp
	}
	text := p.Type == "text"
	sp := &imap.BodyStructureSinglePart{Type: p.Type, Subtype: p.Subtype, Params: expectedParams(p.Params, text),
		ID: p.ID, Description: decodeWords(p.Description), Encoding: encodingToken(p.Encoding), Size: uint32(p.BodySize)}
	if text {
		sp.Text = &imap.BodyStructureText{NumLines: p.BodyLines}
	}
	if p.Message != nil {
		sp.MessageRFC822 = &imap.BodyStructureMessageRFC822{Envelope: expectedEnvelope(&p.Message.Envelope),
			BodyStructure: expectedBody(&p.Message.Structure, extended), NumLines: p.BodyLines}
	}
	if extended {
		sp.Extended = &imap.BodyStructureSinglePartExt{Disposition: expectedDisposition(p), Language: p.Language, Location: p.Location}
	}
	return sp
}

func expectedAddrs(l []msgparse.Address) []imap.Address {
	var out []imap.Address
	for _, a := range l {
		out = append(out, imap.Address{Name: decodeWords(a.Name), Mailbox: a.Mailbox, Host: a.Host})
	}
	return out
}

func expectedEnvelope(e *msgparse.Envelope) *imap.Envelope {
	date, _ := netmail.ParseDate(e.Date)
	var h mail.Header
	h.Set("In-Reply-To", e.InReplyTo)
	inReplyTo, _ := h.MsgIDList("In-Reply-To")
	h.Set("Message-Id", e.MessageID)
	msgID, _ := h.MessageID()
	env := &imap.Envelope{Date: date.UTC(), Subject: decodeWords(e.Subject), From: expectedAddrs(e.From),
		Sender: expectedAddrs(e.Sender), ReplyTo: expectedAddrs(e.ReplyTo), To: expectedAddrs(e.To),
		Cc: expectedAddrs(e.Cc), Bcc: expectedAddrs(e.Bcc), InReplyTo: inReplyTo, MessageID: msgID}
	if env.Sender == nil {
		env.Sender = env.From
	}
	if env.ReplyTo == nil {
		env.ReplyTo = env.From
	}
	return env
}

// normalizeDates makes dates comparable with reflect.DeepEqual.
func normalizeDates(bs imap.BodyStructure) {
	bs.Walk(func(_ []int, part imap.BodyStructure) bool {
		if sp, ok := part.(*imap.BodyStructureSinglePart); ok && sp.MessageRFC822 != nil {
			sp.MessageRFC822.Envelope.Date = sp.MessageRFC822.Envelope.Date.UTC()
			normalizeDates(sp.MessageRFC822.BodyStructure)
		}
		return true
	})
}

// TestRoundTripImapclient renders ENVELOPE, BODYSTRUCTURE and BODY for
// real-shaped messages, has go-imap v2's client parse them from a socket,
// and checks the client sees the structure that was recorded.
func TestRoundTripImapclient(t *testing.T) {
	groups := groupsMessage()
	groups.env.Subject = "Grüße \"quoted\"\r\n folded" // as a literal
	groups.env.Cc = append(groups.env.Cc, addr("Zoë", "z", "y.org"))
	fwd := dovecotForward()
	fwd.kids[1].msg = groups
	cases := map[string]*tnode{
		"dovecot-mixed":   dovecotMixed(),
		"attachments":     mixedWithAttachment(),
		"rfc3501-sample":  rfc3501Sample(),
		"groups":          groups,
		"forward":         fwd,
		"simple":          simpleMessage(),
		"alternative":     alternative(),
		"dovecot-forward": dovecotForward(),
	}
	for name, root := range cases {
		t.Run(name, func(t *testing.T) {
			_, m := mkMessage(root)
			var ext, body, env bytes.Buffer
			WriteBodyStructure(&ext, &m.Structure, true)
			WriteBodyStructure(&body, &m.Structure, false)
			WriteEnvelope(&env, &m.Envelope)
			addr := fetchServer(t, []string{
				"BODYSTRUCTURE " + ext.String() + " ENVELOPE " + env.String(),
				"BODY " + body.String(),
			})
			conn, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			c := imapclient.New(conn, nil)
			defer c.Close()

			msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
				BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, Envelope: true}).Collect()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("FETCH BODYSTRUCTURE: %v (%d messages)\n%q", err, len(msgs), ext.String())
			}
			got := msgs[0]
			normalizeDates(got.BodyStructure)
			if want := expectedBody(&m.Structure, true); !reflect.DeepEqual(got.BodyStructure, want) {
				t.Errorf("BODYSTRUCTURE\n got %s\nwant %s", dump(got.BodyStructure), dump(want))
			}
			got.Envelope.Date = got.Envelope.Date.UTC()
			if want := expectedEnvelope(&m.Envelope); !reflect.DeepEqual(got.Envelope, want) {
				t.Errorf("ENVELOPE\n got %+v\nwant %+v", got.Envelope, want)
			}

			msgs, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
				BodyStructure: &imap.FetchItemBodyStructure{}}).Collect()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("FETCH BODY: %v\n%q", err, body.String())
			}
			normalizeDates(msgs[0].BodyStructure)
			if want := expectedBody(&m.Structure, false); !reflect.DeepEqual(msgs[0].BodyStructure, want) {
				t.Errorf("BODY\n got %s\nwant %s", dump(msgs[0].BodyStructure), dump(want))
			}
		})
	}
}

func dump(bs imap.BodyStructure) string {
	var b strings.Builder
	bs.Walk(func(path []int, part imap.BodyStructure) bool {
		fmt.Fprintf(&b, "\n  %v ", path)
		switch p := part.(type) {
		case *imap.BodyStructureSinglePart:
			fmt.Fprintf(&b, "%+v text=%+v ext=%+v", *p, p.Text, p.Extended)
			if p.MessageRFC822 != nil {
				fmt.Fprintf(&b, " env=%+v lines=%d", p.MessageRFC822.Envelope, p.MessageRFC822.NumLines)
			}
		case *imap.BodyStructureMultiPart:
			fmt.Fprintf(&b, "multipart/%s ext=%+v", p.Subtype, p.Extended)
		}
		return true
	})
	return b.String()
}
