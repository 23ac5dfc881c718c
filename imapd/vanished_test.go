package imapd

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// absentBrute is absentUIDs by enumeration, for small numbers.
func absentBrute(set numSet, top uint32, live []uint32) string {
	var out []uint32
	for u := uint32(1); u <= top; u++ {
		if setContains(set, u, top) && !slices.Contains(live, u) {
			out = append(out, u)
		}
	}
	return formatUIDs(out)
}

func TestAbsentUIDs(t *testing.T) {
	cases := []struct {
		set  []numRange
		top  uint32
		live []uint32
		want string
	}{
		{[]numRange{{1, 0}}, 10, []uint32{2, 3, 7}, "1,4:6,8:10"},
		{[]numRange{{1, 0}}, 0, nil, ""},
		{[]numRange{{5, 3}}, 10, []uint32{4}, "3,5"},
		{[]numRange{{8, 20}}, 10, nil, "8:10"},
		{[]numRange{{1, 4}, {3, 6}}, 10, []uint32{1, 6}, "2:4,5"},
		{[]numRange{{0, 0}}, 9, []uint32{9}, ""},
		{[]numRange{{1, 0}}, 4, []uint32{1, 2, 3, 4}, ""},
	}
	for _, c := range cases {
		got := absentUIDs(numSet{ranges: c.set}, c.top, c.live)
		if got != c.want {
			t.Errorf("absentUIDs(%v, %d, %v) = %q, want %q", c.set, c.top, c.live, got, c.want)
		}
	}
	// Random sets against enumeration; the two may split ranges
	// differently, so compare the UIDs they denote.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		top := uint32(rng.IntN(40))
		var set numSet
		for j := rng.IntN(4) + 1; j > 0; j-- {
			set.ranges = append(set.ranges, numRange{uint32(rng.IntN(45)), uint32(rng.IntN(45))})
		}
		var live []uint32
		for u := uint32(1); u <= top; u++ {
			if rng.IntN(3) == 0 {
				live = append(live, u)
			}
		}
		got := absentUIDs(set, top, live)
		want := absentBrute(set, top, live)
		if expand(t, got) != want {
			t.Fatalf("absentUIDs(%v, %d, %v) = %q, want the UIDs of %q", set.ranges, top, live, got, want)
		}
	}
}

// expand normalises a sequence set of ascending, possibly adjacent ranges.
func expand(t *testing.T, s string) string {
	t.Helper()
	if s == "" {
		return ""
	}
	var out []uint32
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, ":")
		lo, err1 := strconv.ParseUint(a, 10, 32)
		hi := lo
		var err2 error
		if isRange {
			hi, err2 = strconv.ParseUint(b, 10, 32)
		}
		if err1 != nil || err2 != nil || hi < lo || (len(out) > 0 && uint32(lo) <= out[len(out)-1]) {
			t.Fatalf("bad or unordered set %q", s)
		}
		for u := lo; u <= hi; u++ {
			out = append(out, uint32(u))
		}
	}
	return formatUIDs(out)
}
