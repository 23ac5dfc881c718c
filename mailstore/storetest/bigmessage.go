package storetest

import (
	"bytes"
	"crypto/sha256"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

const (
	// bigSize is the generated message: 50 MB, under the default
	// POSTRIDER_MAX_MESSAGE_SIZE of 52428800.
	bigSize = 50_000_000
	// heapBudget is the acceptance bound on Go heap growth while a
	// 50 MB message is delivered or read back.
	heapBudget = 8 << 20
)

// heapSampler records the largest HeapAlloc seen while it runs.
type heapSampler struct {
	stop chan struct{}
	done sync.WaitGroup
	peak uint64
}

func startHeapSampler() *heapSampler {
	s := &heapSampler{stop: make(chan struct{})}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			s.peak = max(s.peak, ms.HeapAlloc)
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peak, including a last sample.
func (s *heapSampler) Stop() uint64 {
	close(s.stop)
	s.done.Wait()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return max(s.peak, ms.HeapAlloc)
}

func heapNow() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// testBigMessage delivers a generated 50 MB message, reads it back and
// checks both the octets (SHA-256, streamed) and the Go heap growth during
// each phase. It runs alone (before the parallel subtests) because HeapAlloc
// is process-wide.
//
// The garbage collector runs with GOGC=10 during the measurement, so that
// HeapAlloc tracks the memory the store actually holds (plus at most 10%
// of the live heap of uncollected garbage) rather than the garbage the
// default GOGC=100 lets accumulate; a store that buffers the message shows
// up either way.
func testBigMessage(t *testing.T, f Factory) {
	if testing.Short() {
		t.Skip("50 MB message skipped in -short mode")
	}
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("big@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")

	// Warm up connections, statements and buffers before the baseline.
	warm := fx.deliver(genMessage(300_000, 1), mailstore.Recipient{AccountID: a.ID})
	fx.mustRead(a.ID, inbox.ID, warm.Delivered[0].UID)

	defer debug.SetGCPercent(debug.SetGCPercent(10))

	base := heapNow()
	sampler := startHeapSampler()
	inHash := sha256.New()
	start := time.Now()
	res, err := st.Deliver(ctx, &mailstore.Delivery{
		MailFrom:   "gen@remote.example",
		Recipients: []mailstore.Recipient{{AccountID: a.ID}},
		Body:       io.TeeReader(newGenReader(bigSize, 42), inHash),
	})
	deliverPeak := sampler.Stop()
	deliverTime := time.Since(start)
	must(t, err, "Deliver 50 MB")
	if res.Size != bigSize || len(res.Delivered) != 1 {
		t.Fatalf("Deliver 50 MB: %+v, want size %d and one recipient", res, bigSize)
	}
	uid := res.Delivered[0].UID

	base2 := heapNow()
	sampler = startHeapSampler()
	start = time.Now()
	rc, err := st.OpenMessage(ctx, a.ID, inbox.ID, uid, 0, -1)
	must(t, err, "OpenMessage 50 MB")
	outHash := sha256.New()
	n, err := io.Copy(outHash, rc)
	rc.Close()
	readPeak := sampler.Stop()
	readTime := time.Since(start)
	must(t, err, "reading the 50 MB message")

	deliverGrowth := int64(deliverPeak) - int64(base)
	readGrowth := int64(readPeak) - int64(base2)
	t.Logf("50 MB message: deliver %v, heap growth %.2f MiB; read %v, heap growth %.2f MiB (budget %d MiB, GOGC=10)",
		deliverTime.Round(time.Millisecond), float64(deliverGrowth)/(1<<20), readTime.Round(time.Millisecond),
		float64(readGrowth)/(1<<20), heapBudget>>20)
	if n != bigSize || !bytes.Equal(inHash.Sum(nil), outHash.Sum(nil)) {
		t.Errorf("read back %d octets with SHA-256 %x; delivered %d octets with SHA-256 %x", n, outHash.Sum(nil), bigSize, inHash.Sum(nil))
	}
	if deliverGrowth >= heapBudget {
		t.Errorf("delivering 50 MB grew the Go heap by %d octets (%.1f MiB), budget %d MiB", deliverGrowth, float64(deliverGrowth)/(1<<20), heapBudget>>20)
	}
	if readGrowth >= heapBudget {
		t.Errorf("reading 50 MB back grew the Go heap by %d octets (%.1f MiB), budget %d MiB", readGrowth, float64(readGrowth)/(1<<20), heapBudget>>20)
	}

	// A range in the middle, compared with the regenerated octets.
	const off, length = 25_000_003, 1 << 20
	gen := newGenReader(bigSize, 42)
	if _, err := io.CopyN(io.Discard, gen, off); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, length)
	if _, err := io.ReadFull(gen, want); err != nil {
		t.Fatal(err)
	}
	got, err := fx.read(a.ID, inbox.ID, uid, off, length)
	must(t, err, "OpenMessage range of the 50 MB message")
	if !bytes.Equal(got, want) {
		t.Errorf("range [%d, +%d) of the 50 MB message: %d octets, first difference at %d", off, length, len(got), firstDiff(got, want))
	}

	ms := fx.list(a.ID, inbox.ID, mailstore.UIDs(uid))
	if len(ms) != 1 || ms[0].Size != bigSize {
		t.Errorf("ListMessages of the 50 MB message = %+v", ms)
	}
	ds, err := st.FetchDetails(ctx, a.ID, inbox.ID, mailstore.UIDs(uid))
	must(t, err, "FetchDetails of the 50 MB message")
	if len(ds) != 1 || ds[0].Parsed == nil {
		t.Errorf("FetchDetails of the 50 MB message returned %d details", len(ds))
	} else if p := ds[0].Parsed; p.Size != bigSize || p.Structure.Type != "text" || p.Structure.BodyOffset+p.Structure.BodySize != bigSize {
		t.Errorf("FetchDetails of the 50 MB message: size %d, type %s, body %d+%d; want %d, text, ending at %d",
			p.Size, p.Structure.Type, p.Structure.BodyOffset, p.Structure.BodySize, bigSize, bigSize)
	}
	fx.checkQuota(a.ID, bigSize+300_000, "after the 50 MB delivery")
	testBigMultiAppend(t, fx, a.ID, inbox.ID)
}
