package config

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// unknownKey is the message for a key that is not valid where it is
// written: a key of the same mapping that is a small typing error away
// ("max_expire" for "max_expires"), else the same key where it is valid
// (an indentation error), else a pointer to the documentation. typ is the
// Go type the decoder named ("config.Registrar").
func unknownKey(name, typ string) string {
	if near := nearest(name, keysOf(typ)); len(near) > 0 {
		return "unknown key; did you mean " + quoteAll(near) + "?"
	}
	if paths := elsewhere(name); len(paths) > 0 {
		return "unknown key here; did you mean " + strings.Join(paths, " or ") + "? (check the indentation)"
	}
	return "unknown key; check its spelling and indentation (see docs/CONFIG.md for every key)"
}

func quoteAll(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = strconv.Quote(k)
	}
	return strings.Join(q, " or ")
}

// schema lists the YAML keys of every struct type of Config by the name
// the decoder gives the type, and every key path ("registrar.max_expires");
// former names kept as aliases (struct tag alias) are in neither.
var schema = sync.OnceValues(func() (map[string][]string, []string) {
	types := map[string][]string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == reflect.TypeFor[Duration]() {
			return
		}
		if _, done := types[t.String()]; done {
			return
		}
		var keys []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			// A former name (tag alias) still loads but is not offered.
			if !f.IsExported() || name == "-" || f.Tag.Get("alias") != "" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			keys = append(keys, name)
		}
		types[t.String()] = keys
		for i := range t.NumField() {
			walk(t.Field(i).Type)
		}
	}
	walk(reflect.TypeFor[Config]())
	// Every key path, the mappings' own ("registrar") included.
	var paths []string
	walkKeys(reflect.TypeFor[Config](), "", nil, func(path string, index []int) {
		if reflect.TypeFor[Config]().FieldByIndex(index).Tag.Get("alias") != "" {
			return
		}
		for i := range len(path) {
			if path[i] == '.' && !slices.Contains(paths, path[:i]) {
				paths = append(paths, path[:i])
			}
		}
		paths = append(paths, path)
	})
	return types, paths
})

func keysOf(typ string) []string {
	types, _ := schema()
	return types[typ]
}

// elsewhere lists the key paths whose last part is name (at most three).
func elsewhere(name string) []string {
	_, paths := schema()
	var out []string
	for _, p := range paths {
		if p[strings.LastIndexByte(p, '.')+1:] == name && len(out) < 3 {
			out = append(out, p)
		}
	}
	return out
}

// nearest returns the candidates closest to name, if they are close
// enough to be a typing error: one edit (insertion, deletion,
// substitution or swap of neighbours) for keys under six characters, two
// for longer ones; letter case does not count. Ties are all returned, in
// the candidates' order.
func nearest(name string, candidates []string) []string {
	if len(name) > 64 { // not a typing error; and the distance is O(n·m)
		return nil
	}
	lower := strings.ToLower(name)
	best, out := -1, []string(nil)
	for _, c := range candidates {
		limit := 2
		if len(c) < 6 {
			limit = 1
		}
		d := distance(lower, c)
		if d > limit || d >= len(c) {
			continue
		}
		switch {
		case best < 0 || d < best:
			best, out = d, []string{c}
		case d == best:
			out = append(out, c)
		}
	}
	return slices.Clip(out)
}

// distance is the optimal string alignment distance between a and b
// (Damerau–Levenshtein restricted to edits that do not overlap): the
// fewest insertions, deletions, substitutions and swaps of two adjacent
// bytes turning a into b. Keys are ASCII, so bytes are letters.
func distance(a, b string) int {
	// Three rows of the (len(a)+1)×(len(b)+1) table: the swap looks two
	// rows back.
	prev2 := make([]int, len(b)+1)
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
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
