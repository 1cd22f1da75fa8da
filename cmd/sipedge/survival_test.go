package main

import (
	"path/filepath"
	"testing"
	"time"

	"sipedge/config"
	"sipedge/features/pool"
)

// TestSurvivalExample: contrib/examples/survival.yaml makes a survival
// configuration whose upstream has a next hop and whose fallback
// (pool:pstn) resolves to the pool.
func TestSurvivalExample(t *testing.T) {
	cfg, err := config.Load(filepath.Join("..", "..", "contrib", "examples", "survival.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a := &app{pools: pool.New(nil, nil)}
	if a.poolSet, err = a.pools.Prepare(poolConfigs(cfg)); err != nil {
		t.Fatal(err)
	}
	sc, err := a.survivalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Enabled || sc.Target.Addr.String() != "198.51.100.10:5060" || sc.Fallback == nil ||
		sc.RegisterExpires != time.Minute || sc.DownAfter != 3 || len(sc.Domains) != 2 {
		t.Fatalf("survival: %+v", sc)
	}
	cfg.Survival.Fallback = "pool:nothere"
	if _, err := a.survivalConfig(cfg); err == nil {
		t.Fatal("fallback to a missing pool accepted")
	}
}
