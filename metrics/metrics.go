// Package metrics reads sipedge's statistics convention, so that an
// exporter (Prometheus text, the JSON API) needs no code per component.
//
// The convention: every component has a method Stats() that returns a
// snapshot — a struct value, safe to keep — whose exported fields are
//
//   - uint64: a counter (a total since start), exported as NAME_total;
//   - int, int64: a gauge (a level now);
//   - time.Duration: a gauge in seconds;
//   - a nested struct of the same kinds: its fields prefixed by its name;
//   - map[string]uint64 with a `label:"NAME"` tag: one counter per key,
//     the key as the value of label NAME (per stage, per hook);
//   - map[string]int64 or map[string]time.Duration with a label tag: one
//     gauge per key (per pool target: up, active calls, probe latency in
//     seconds) — for keys the configuration bounds;
//   - HistogramSnapshot: a histogram of delays, NAME_seconds;
//   - DistributionSnapshot: a histogram of other values (a MOS, a
//     percentage) over its own bounds, NAME.
//
// Field names become snake case: Requests → requests_total, ConnsOpen →
// conns_open. A field tagged `metric:"-"` is left out. Anything else in a
// Stats struct is a programming error that Walk reports (and a test of
// every component's Stats catches).
package metrics

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode"
)

// Sample is one value of a snapshot.
type Sample struct {
	Name    string // component_field, snake case; counters end in _total
	Counter bool
	Value   float64
	Label   string // label name, "" when none
	LabelV  string // its value
	// Hist is set for a histogram (a HistogramSnapshot field); Value is
	// then unused.
	Hist *HistogramSnapshot
	// Dist is set for a distribution (a DistributionSnapshot field);
	// Value is then unused.
	Dist *DistributionSnapshot
}

var histogramType = reflect.TypeOf(HistogramSnapshot{})

var distributionType = reflect.TypeOf(DistributionSnapshot{})

var durationType = reflect.TypeOf(time.Duration(0))

// Walk calls emit for every value of snapshot (a Stats() result) under the
// component prefix, in field order (map keys sorted).
func Walk(component string, snapshot any, emit func(Sample)) error {
	v := reflect.ValueOf(snapshot)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return fmt.Errorf("metrics: %s: Stats() is a %s, not a struct", component, v.Kind())
	}
	return walk(component, v, emit)
}

func walk(prefix string, v reflect.Value, emit func(Sample)) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("metric") == "-" {
			continue
		}
		name := prefix + "_" + Snake(f.Name)
		fv := v.Field(i)
		switch {
		case f.Type == histogramType:
			h := fv.Interface().(HistogramSnapshot)
			emit(Sample{Name: name + "_seconds", Hist: &h})
		case f.Type == distributionType:
			d := fv.Interface().(DistributionSnapshot)
			emit(Sample{Name: name, Dist: &d})
		case f.Type == durationType:
			emit(Sample{Name: name + "_seconds", Value: time.Duration(fv.Int()).Seconds()})
		case f.Type.Kind() == reflect.Uint64:
			emit(Sample{Name: name + "_total", Counter: true, Value: float64(fv.Uint())})
		case f.Type.Kind() == reflect.Int || f.Type.Kind() == reflect.Int64:
			emit(Sample{Name: name, Value: float64(fv.Int())})
		case f.Type.Kind() == reflect.Struct:
			if err := walk(name, fv, emit); err != nil {
				return err
			}
		case f.Type.Kind() == reflect.Map && f.Type.Key().Kind() == reflect.String && f.Type.Elem().Kind() == reflect.Uint64:
			label := f.Tag.Get("label")
			if label == "" {
				return fmt.Errorf("metrics: %s: map field %s needs a label tag", prefix, f.Name)
			}
			keys := make([]string, 0, fv.Len())
			for _, k := range fv.MapKeys() {
				keys = append(keys, k.String())
			}
			sort.Strings(keys)
			for _, k := range keys {
				emit(Sample{Name: name + "_total", Counter: true, Value: float64(fv.MapIndex(reflect.ValueOf(k)).Uint()), Label: label, LabelV: k})
			}
		case f.Type.Kind() == reflect.Map && f.Type.Key().Kind() == reflect.String && f.Type.Elem().Kind() == reflect.Int64:
			label := f.Tag.Get("label")
			if label == "" {
				return fmt.Errorf("metrics: %s: map field %s needs a label tag", prefix, f.Name)
			}
			keys := make([]string, 0, fv.Len())
			for _, k := range fv.MapKeys() {
				keys = append(keys, k.String())
			}
			sort.Strings(keys)
			gauge, scale := name, 1.0
			if f.Type.Elem() == durationType {
				gauge, scale = name+"_seconds", 1/float64(time.Second)
			}
			for _, k := range keys {
				emit(Sample{Name: gauge, Value: float64(fv.MapIndex(reflect.ValueOf(k)).Int()) * scale, Label: label, LabelV: k})
			}
		default:
			return fmt.Errorf("metrics: %s: field %s has type %s, not one of the convention's (package doc)", prefix, f.Name, f.Type)
		}
	}
	return nil
}

// Snake turns a Go field name into snake case: TLSHandshakeErrors →
// tls_handshake_errors, ConnsOpen → conns_open.
func Snake(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i, c := range r {
		if unicode.IsUpper(c) {
			if i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1]) && unicode.IsUpper(r[i-1])) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(c))
		} else {
			b.WriteRune(c)
		}
	}
	return b.String()
}
