package imapd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

func (fuzzStore) Quota(context.Context, int64) (mailstore.Quota, error) {
	return mailstore.Quota{StorageUsed: 5000, StorageLimit: 1 << 20, MessagesUsed: 3, MessagesLimit: 10}, nil
}

func (fuzzStore) DeletedSize(context.Context, int64, int64) (int64, error) { return 2049, nil }

var quotaSeeds = []string{
	"a GETQUOTA \"\"\r\n", "a GETQUOTA {0}\r\n\r\n", "a GETQUOTA root\r\n", "a GETQUOTAROOT INBOX\r\n", "a GETQUOTAROOT \"&AMQ-\"\r\n",
	"a SETQUOTA \"\" (STORAGE 512)\r\n", "a SETQUOTA \"\" ()\r\n", "a SETQUOTA \"\" (STORAGE 512 MESSAGE 10 X-Y 0)\r\n",
	"a SETQUOTA {1}\r\nr (storage 99999999999999999999)\r\n", "a SETQUOTA \"\" ((STORAGE 1))\r\n", "a SETQUOTA \"\" (STORAGE)\r\n",
	"a STATUS INBOX (DELETED DELETED-STORAGE)\r\n", "a LIST \"\" * RETURN (STATUS (DELETED-STORAGE MESSAGES))\r\n",
}

// FuzzQuotaCommands runs GETQUOTA, GETQUOTAROOT and SETQUOTA (the
// setquota-list parser, RFC 9208 §7) through the real command loop.
func FuzzQuotaCommands(f *testing.F) {
	for _, s := range quotaSeeds {
		f.Add(byte(1), []byte(s))
		f.Add(byte(2), []byte(s))
	}
	f.Fuzz(func(t *testing.T, st byte, input []byte) {
		state := []connState{stateNotAuth, stateAuth, stateSelected}[st%3]
		done := make(chan struct{})
		go func() {
			defer close(done)
			runCommands(t, input, state, io.Discard)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			panic(fmt.Sprintf("hang on state %d input %q", state, input))
		}
	})
}

// TestQuotaSeedsRun checks that the seeds reach the handlers as intended.
func TestQuotaSeedsRun(t *testing.T) {
	var out strings.Builder
	runCommands(t, []byte(quotaSeeds[0]+quotaSeeds[5]+quotaSeeds[8]), stateAuth, &out)
	want := `* QUOTA "" (STORAGE 5 1024 MESSAGE 3 10)` + "\r\na OK GETQUOTA completed\r\n" +
		"a NO [NOPERM] Quota limits are set by the administrator\r\n" +
		"+ Ready for literal data\r\na BAD Number out of range\r\n"
	if out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
}
