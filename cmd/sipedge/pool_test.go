package main

import (
	"path/filepath"
	"testing"

	"sipedge/config"
	"sipedge/features/pool"
	"sipedge/proxy"
)

// TestPoolExample: contrib/examples/pool.yaml makes pools whose routers
// the routing table's routes resolve (to: pool:NAME).
func TestPoolExample(t *testing.T) {
	cfg, err := config.Load(filepath.Join("..", "..", "contrib", "examples", "pool.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pc := poolConfigs(cfg)
	if len(pc) != 2 || pc[0].Algorithm != pool.Weighted || pc[1].Algorithm != pool.Priority || pc[0].Targets[0].Weight != 2 {
		t.Fatalf("pools: %+v", pc)
	}
	set, err := pool.New(nil, nil).Prepare(pc)
	if err != nil {
		t.Fatal(err)
	}
	tab := &proxy.Table{Named: set.Routers()}
	for _, r := range cfg.Routes {
		tab.Routes = append(tab.Routes, proxy.StaticRoute{Name: r.Name, Prefix: r.Prefix, To: r.To})
	}
	if err := tab.Compile(); err != nil {
		t.Fatal(err)
	}
}
