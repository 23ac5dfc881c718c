package netutil

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestDrain(t *testing.T) {
	// Connections end on their own: no force, cancel still called.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { time.Sleep(20 * time.Millisecond); wg.Done() }()
	cancelled, forced := false, false
	if err := Drain(context.Background(), &wg, func() { cancelled = true }, func() { forced = true }); err != nil || !cancelled || forced {
		t.Fatalf("clean drain: err %v cancelled %v forced %v", err, cancelled, forced)
	}

	// The deadline passes: force closes the straggler, Drain waits for it.
	stop := make(chan struct{})
	wg.Add(1)
	go func() { <-stop; wg.Done() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	cancelled = false
	err := Drain(ctx, &wg, func() { cancelled = true }, func() { close(stop) })
	if err != context.DeadlineExceeded || !cancelled {
		t.Fatalf("forced drain: err %v cancelled %v", err, cancelled)
	}
}
