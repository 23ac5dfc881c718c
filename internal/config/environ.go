package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strings"
)

// LevelTrace is the slog level of the protocol trace (LOG_LEVEL=trace):
// every command and reply line, with credentials and message contents
// masked. The frontends log their trace lines at this level.
const LevelTrace = slog.Level(-8)

// testPrefix names variables read by the test suite, not by the server.
const testPrefix = Prefix + "TEST_"

// UnknownVariables returns the POSTRIDER_* names in environ (as os.Environ
// gives it) that no setting reads, each with the closest known name when
// one is near enough to be a likely misspelling. A misspelt variable is
// otherwise silently ignored and its default used.
func UnknownVariables(environ []string) []string {
	known := map[string]bool{}
	var names []string
	for _, v := range Variables() {
		known[v.Name] = true
		names = append(names, v.Name)
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, Prefix) || known[name] || strings.HasPrefix(name, testPrefix) {
			continue
		}
		best, bestD := "", 4 // suggest only within three edits
		for _, k := range names {
			if d := editDistance(name, k); d < bestD {
				best, bestD = k, d
			}
		}
		if best != "" {
			name += " (did you mean " + best + "?)"
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// editDistance is the Levenshtein distance between two short ASCII names.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Effective is one variable with the value in effect.
type Effective struct {
	Variable
	Value string // as in effect, secrets masked
	Set   bool   // given in the environment (else the default applies)
}

// Effect lists every variable with the value c holds for it, as the server
// would use it: the environment's value or the default, and derived values
// (e.g. the host name) filled in. Passwords in URLs and the values of
// fields tagged secret:"true" are masked.
func (c *Config) Effect() []Effective {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	byName := map[string]reflect.Value{}
	secret := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		if name := t.Field(i).Tag.Get("env"); name != "" {
			byName[Prefix+name] = v.Field(i)
			secret[Prefix+name] = t.Field(i).Tag.Get("secret") == "true"
		}
	}
	var out []Effective
	for _, vr := range Variables() {
		_, set := os.LookupEnv(vr.Name)
		e := Effective{Variable: vr, Set: set}
		if f, ok := byName[vr.Name]; ok {
			e.Value = render(f)
		}
		switch {
		case secret[vr.Name] && e.Value != "":
			e.Value = "********"
		case strings.HasSuffix(vr.Name, "_URL"):
			e.Value = maskURL(e.Value)
		}
		out = append(out, e)
	}
	return out
}

func render(f reflect.Value) string {
	switch x := f.Interface().(type) {
	case []string:
		return strings.Join(x, ",")
	case Size:
		return fmt.Sprint(int64(x))
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(f.Interface())
}

// maskURL hides the password of a URL (postgres://user:secret@host/db) and
// of a password=... query or keyword parameter.
func maskURL(s string) string {
	if s == "" {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		// A keyword/value connection string: mask password=...
		f := strings.Fields(s)
		for i, kv := range f {
			if strings.HasPrefix(strings.ToLower(kv), "password=") {
				f[i] = "password=********"
			}
		}
		return strings.Join(f, " ")
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return strings.ReplaceAll(u.String(), "xxxxx", "********")
}
