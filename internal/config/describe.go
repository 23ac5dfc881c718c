package config

import (
	"os"
	"reflect"
	"strings"
)

func collectDescs(into map[string]string) {
	t := reflect.TypeFor[Config]()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name := f.Tag.Get("env"); name != "" {
			into[Prefix+name] = f.Tag.Get("desc")
		}
	}
}

// envNameOf maps a Config field name to its variable name (without prefix).
func envNameOf(field string) string {
	if f, ok := reflect.TypeFor[Config]().FieldByName(field); ok {
		return f.Tag.Get("env")
	}
	return field
}

// applyEmptyAddrs honours the contract that an _ADDR variable set to the
// empty string disables its listener (the env parser would otherwise apply
// the default).
func (c *Config) applyEmptyAddrs() {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("env")
		if !strings.HasSuffix(name, "_ADDR") {
			continue
		}
		if val, ok := os.LookupEnv(Prefix + name); ok && strings.TrimSpace(val) == "" {
			v.Field(i).SetString("")
		}
	}
}
