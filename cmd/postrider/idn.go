package main

import (
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// aLabels turns the domain of an admin argument (DOMAIN, local@DOMAIN or
// @DOMAIN) into its A-label form (RFC 5890 §2.3.2.1), so that
// "bücher.example" is stored as "xn--bcher-kva.example" as mail to it
// arrives. Arguments without non-ASCII characters are returned unchanged;
// the local part is left to the store's own validation.
func aLabels(arg string) (string, error) {
	local, dom, hasAt := "", arg, false
	if i := strings.LastIndexByte(arg, '@'); i >= 0 {
		local, dom, hasAt = arg[:i], arg[i+1:], true
	}
	if isASCII(dom) {
		return arg, nil
	}
	a, err := idna.Lookup.ToASCII(dom)
	if err != nil {
		return "", &exitError{code: 1, err: fmt.Errorf("%s: not a valid internationalised domain name: %v", dom, err)}
	}
	if hasAt {
		return local + "@" + a, nil
	}
	return a, nil
}

// aLabelArgs applies aLabels to every argument.
func aLabelArgs(args []string) ([]string, error) {
	out := make([]string, len(args))
	for i, a := range args {
		var err error
		if out[i], err = aLabels(a); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
