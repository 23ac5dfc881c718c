package pop3d

import (
	"sync"
	"testing"
)

func TestAheadBudget(t *testing.T) {
	b := &aheadBudget{max: 2 << 20}
	steps := []struct {
		want  int64
		must  bool
		class int // -1: refused
	}{
		{640 << 10, true, 4},  // 2 MiB free: up to half of it, 1 MiB holds 640 KiB
		{640 << 10, true, 3},  // 1 MiB free: 512 KiB at most
		{640 << 10, false, 2}, // 512 KiB free: 256 KiB
		{10 << 10, false, 0},  // a small read: 64 KiB
		{10 << 10, false, 0},
		{10 << 10, false, 0},
		{10 << 10, false, 0},  // the budget is used up
		{10 << 10, false, -1}, // no room
		{300 << 10, true, 0},  // must: 64 KiB whatever the budget
	}
	var got []int
	for i, s := range steps {
		c, ok := b.reserve(s.want, s.must)
		if !ok {
			c = -1
		}
		if c != s.class {
			t.Fatalf("step %d: reserve(%d, %v) = class %d, want %d", i, s.want, s.must, c, s.class)
		}
		if ok {
			got = append(got, c)
		}
	}
	if u := b.used.Load(); u != 2<<20+64<<10 {
		t.Fatalf("used %d after the steps", u)
	}
	for _, c := range got {
		b.release(c)
	}
	if u := b.used.Load(); u != 0 {
		t.Fatalf("used %d after releasing everything", u)
	}

	// Many sessions at once: the count stays exact.
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 500 {
				c, ok := b.reserve(int64(i*j%(1<<20)), j%3 == 0)
				if ok {
					if buf := aheadBuf(c); cap(*buf) != aheadMinBytes<<c || len(*buf) != 0 {
						t.Errorf("buffer of class %d: cap %d", c, cap(*buf))
					} else {
						putAheadBuf(c, buf)
					}
					b.release(c)
				}
			}
		})
	}
	wg.Wait()
	if u := b.used.Load(); u != 0 {
		t.Fatalf("used %d after concurrent reservations", u)
	}
}
