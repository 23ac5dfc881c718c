package msgparse

import (
	"bufio"
	"errors"
	"io"
	"mime"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// goMessageLeaf is one leaf part as go-message's textproto package reads
// it: media type and raw (undecoded) body.
type goMessageLeaf struct {
	mediaType string
	body      string
}

func goMessageLeaves(t *testing.T, r io.Reader, def string, out *[]goMessageLeaf) {
	t.Helper()
	br := bufio.NewReader(r)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		t.Fatalf("go-message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		mt = def
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := textproto.NewMultipartReader(br, params["boundary"])
		for {
			p, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("go-message: %v", err)
			}
			// Re-serialize the part's header to recurse with the same reader.
			var sb strings.Builder
			if err := textproto.WriteHeader(&sb, p.Header); err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(p)
			def := "text/plain"
			if mt == "multipart/digest" {
				def = "message/rfc822" // RFC 2046 §5.1.5
			}
			goMessageLeaves(t, io.MultiReader(strings.NewReader(sb.String()), strings.NewReader(string(body))), def, out)
		}
	}
	body, _ := io.ReadAll(br)
	*out = append(*out, goMessageLeaf{mt, string(body)})
}

func ourLeaves(raw string, p Part, out *[]goMessageLeaf) {
	if len(p.Parts) > 0 {
		for _, c := range p.Parts {
			ourLeaves(raw, c, out)
		}
		return
	}
	*out = append(*out, goMessageLeaf{p.Type + "/" + p.Subtype, raw[p.BodyOffset : p.BodyOffset+p.BodySize]})
}

// TestCompareGoMessage checks that, on well-formed messages, the leaf
// parts and their raw bodies are the ones go-message's multipart reader
// (which follows RFC 2046 §5.1.1 the same way) finds.
func TestCompareGoMessage(t *testing.T) {
	msgs := []string{fuzzSeeds[2], fuzzSeeds[3], fuzzSeeds[4],
		crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\na\n\n\n--b\n\n\n--b\nContent-Type: image/gif\n\nGIF\n--b--\n"),
		"Content-Type: multipart/mixed; boundary=b\n\npre\n--b\n\nLF only\n--b--\nepi\n",
		genMultipart(200 << 10),
	}
	for i, msg := range msgs {
		var want, got []goMessageLeaf
		goMessageLeaves(t, strings.NewReader(msg), "text/plain", &want)
		m := parseString(t, msg)
		ourLeaves(msg, m.Structure, &got)
		if len(got) != len(want) {
			t.Errorf("message %d: %d leaves, go-message %d", i, len(got), len(want))
			continue
		}
		for j := range got {
			if got[j] != want[j] {
				t.Errorf("message %d leaf %d: %.60q, go-message %.60q", i, j, got[j], want[j])
			}
		}
	}
}
