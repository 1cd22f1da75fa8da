package arch

import (
	"reflect"
	"sipedge/cluster"
	"sipedge/features/peerflow"
	"strings"
	"testing"

	"sipedge/capture"
	"sipedge/features/auth"
	"sipedge/features/calllog"
	"sipedge/features/callmedia"
	"sipedge/features/dialogs"
	"sipedge/features/dialplan"
	"sipedge/features/gateway"
	"sipedge/features/guard"
	"sipedge/features/keepalive"
	"sipedge/features/mime"
	"sipedge/features/pool"
	"sipedge/features/trunk"
	"sipedge/hep"
	"sipedge/media"
	"sipedge/metrics"
	"sipedge/proxy"
	"sipedge/registrar"
	"sipedge/resolve"
	"sipedge/store"
	"sipedge/transport"
	"sipedge/txn"
)

// components are the parts of sipedge with a Stats() snapshot, by the
// metric prefix they are exported under.
var components = map[string]any{
	"proxy":     (*proxy.Core)(nil),
	"txn":       (*txn.Layer)(nil),
	"transport": (*transport.Layer)(nil),
	"registrar": (*registrar.Registrar)(nil),
	"store":     (*store.Store)(nil),
	"resolve":   (*resolve.Resolver)(nil),
	"media":     (*media.Relay)(nil),
	"auth":      (*auth.Feature)(nil),
	"hep":       (*hep.Sender)(nil),
	"calllog":   (*calllog.Feature)(nil),
	"capture":   (*capture.Capture)(nil),
	"callmedia": (*callmedia.Feature)(nil),
	"dialogs":   (*dialogs.Feature)(nil),
	"keepalive": (*keepalive.Feature)(nil),
	"mime":      (*mime.Feature)(nil),
	"guard":     (*guard.Guard)(nil),
	"trunk":     (*trunk.Feature)(nil),
	"dialplan":  (*dialplan.Feature)(nil),
	"pool":      (*pool.Feature)(nil),
	"survival":  (*gateway.Feature)(nil),
	"cluster":   (*cluster.Cluster)(nil),
	"peerflow":  (*peerflow.Feature)(nil),
}

// TestStatsConvention: every component's Stats() returns a snapshot that
// package metrics can read (so an exporter needs nothing per component),
// with names that do not collide.
func TestStatsConvention(t *testing.T) {
	seen := map[string]bool{}
	for name, c := range components {
		m, ok := reflect.TypeOf(c).MethodByName("Stats")
		if !ok || m.Type.NumIn() != 1 || m.Type.NumOut() != 1 {
			t.Errorf("%s: no Stats() method with one result", name)
			continue
		}
		out := m.Type.Out(0)
		if out.Kind() != reflect.Struct {
			t.Errorf("%s: Stats() returns %s, want a snapshot struct value", name, out)
			continue
		}
		zero := reflect.New(out).Elem()
		// Maps get one key each so their labels are walked too.
		for i := 0; i < out.NumField(); i++ {
			if f := zero.Field(i); f.Kind() == reflect.Map && f.CanSet() {
				f.Set(reflect.MakeMap(f.Type()))
				f.SetMapIndex(reflect.ValueOf("x"), reflect.Zero(f.Type().Elem()))
			}
		}
		n := 0
		err := metrics.Walk(name, zero.Interface(), func(s metrics.Sample) {
			n++
			key := s.Name + "{" + s.Label + "=" + s.LabelV + "}"
			if seen[key] {
				t.Errorf("%s: %s twice", name, key)
			}
			seen[key] = true
			if s.Hist == nil && s.Dist == nil && s.Counter != strings.HasSuffix(s.Name, "_total") {
				t.Errorf("%s: %s: counters and only counters end in _total", name, s.Name)
			}
		})
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if n == 0 {
			t.Errorf("%s: Stats() has no values", name)
		}
	}
}
