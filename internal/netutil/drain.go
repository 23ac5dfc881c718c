package netutil

import (
	"context"
	"sync"
)

// Drain is the second stage of a server's shutdown: it waits for the
// connections counted by wg to end. If ctx ends first, it calls force
// (which closes the remaining connections) and waits again, returning
// ctx.Err(). cancel (which cancels the connections' store operations) is
// called in both cases.
func Drain(ctx context.Context, wg *sync.WaitGroup, cancel, force func()) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		cancel()
		return nil
	case <-ctx.Done():
	}
	cancel()
	force()
	<-done
	return ctx.Err()
}
