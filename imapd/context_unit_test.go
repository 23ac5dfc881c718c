package imapd

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// parseSet expands a sequence set as formatUIDs writes it, in its order.
func parseSet(t *testing.T, s string) []uint32 {
	var out []uint32
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, ":")
		x, err := strconv.ParseUint(a, 10, 32)
		if err != nil {
			t.Fatalf("set %q", s)
		}
		y := x
		if isRange {
			if y, err = strconv.ParseUint(b, 10, 32); err != nil || y < x {
				t.Fatalf("set %q", s)
			}
		}
		for v := x; v <= y; v++ {
			out = append(out, uint32(v))
		}
	}
	return out
}

// applyPairs applies "pos set pos set ..." the way a client does (RFC 5267
// §4.3.3, §4.3.4): in order, inserting at or removing from each position.
func applyPairs(t *testing.T, list []uint32, pairs string, add bool) []uint32 {
	f := strings.Fields(pairs)
	if len(f)%2 != 0 {
		t.Fatalf("pairs %q", pairs)
	}
	for k := 0; k < len(f); k += 2 {
		pos, err := strconv.Atoi(f[k])
		if err != nil || pos < 1 || pos > len(list)+1 {
			t.Fatalf("position %q of %d in %q", f[k], len(list), pairs)
		}
		set := parseSet(t, f[k+1])
		if add {
			list = slices.Insert(list, pos-1, set...)
			continue
		}
		if pos-1+len(set) > len(list) || !slices.Equal(list[pos-1:pos-1+len(set)], set) {
			t.Fatalf("REMOVEFROM %d %v does not match %v", pos, set, list)
		}
		list = slices.Delete(list, pos-1, pos-1+len(set))
	}
	return list
}

// A SORT context's ADDTO and REMOVEFROM pairs, applied by a client to its
// copy of the result, give the server's result, for random changes of
// few (insertion) and many (merge) messages.
func TestSortContextPairs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var out bytes.Buffer
	c := &conn{}
	c.w.dst = &out
	crit := []sortCriterion{{kind: sortSize, reverse: true}, {kind: sortArrival}}
	keyOf := func(u uint32) sortKeys {
		return sortKeys{uid: u, seq: u, size: int64(u*7919) % 13, arrival: int64(u*104729) % 5}
	}
	sc := &searchContext{tag: "t", uid: true, sort: crit}
	var client []uint32
	member := map[uint32]bool{}
	for round := 0; round < 300; round++ {
		n := 1 + rng.IntN(5)
		if round%10 == 0 {
			n = 40 + rng.IntN(100) // past maxSortInserts
		}
		var added, removed []uint32
		for range n {
			u := uint32(1 + rng.IntN(400))
			if member[u] {
				removed = append(removed, u)
			} else {
				added = append(added, u)
			}
		}
		added, removed = sortedCompact(added), sortedCompact(removed)
		if len(removed) > 0 {
			out.Reset()
			c.writeSortRemovals(sc, removed)
			c.w.bw.Flush()
			client = applyPairs(t, client, out.String(), false)
			for _, u := range removed {
				delete(member, u)
			}
		}
		if len(added) > 0 {
			keys := make([]sortKeys, len(added))
			for i, u := range added {
				keys[i] = keyOf(u)
				member[u] = true
			}
			slices.SortFunc(keys, func(a, b sortKeys) int { return compareSort(crit, &a, &b) })
			out.Reset()
			c.writeSortAdditions(sc, keys)
			c.w.bw.Flush()
			client = applyPairs(t, client, out.String(), true)
		}
		if got := keyUIDs(sc.keys); !slices.Equal(got, client) {
			t.Fatalf("round %d: server %v, client %v", round, got, client)
		}
		if !slices.IsSortedFunc(sc.keys, func(a, b sortKeys) int { return compareSort(crit, &a, &b) }) {
			t.Fatalf("round %d: not in order", round)
		}
		if len(sc.keys) != len(member) {
			t.Fatalf("round %d: %d keys, %d members", round, len(sc.keys), len(member))
		}
	}
}

func TestMergeAscending(t *testing.T) {
	if got := mergeAscending([]uint32{1, 4, 9}, []uint32{2, 3, 10}); !slices.Equal(got, []uint32{1, 2, 3, 4, 9, 10}) {
		t.Fatal(got)
	}
	if got := mergeAscending(nil, []uint32{5}); !slices.Equal(got, []uint32{5}) {
		t.Fatal(got)
	}
}
