package controllers

import (
	"testing"

	"k8s.io/client-go/rest"
)

// NewManager raises client-go's request limits for a fleet, keeps a limit the caller's config
// already has, and lets the options override both.
func TestNewManagerClientLimits(t *testing.T) {
	cases := []struct {
		name      string
		cfgQPS    float32
		cfgBurst  int
		optQPS    float32
		optBurst  int
		wantQPS   float32
		wantBurst int
	}{
		{name: "defaults", wantQPS: DefaultKubeAPIQPS, wantBurst: DefaultKubeAPIBurst},
		{name: "config's own limit kept", cfgQPS: 7, cfgBurst: 9, wantQPS: 7, wantBurst: 9},
		{name: "options win", cfgQPS: 7, cfgBurst: 9, optQPS: 300, optBurst: 600, wantQPS: 300, wantBurst: 600},
	}
	if env == nil {
		t.Skip(skipReason)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := rest.CopyConfig(env.Config)
			cfg.QPS, cfg.Burst = tc.cfgQPS, tc.cfgBurst
			mgr, err := NewManager(cfg, ManagerOptions{Scheme: env.Scheme, SkipNameValidation: true, KubeAPIQPS: tc.optQPS, KubeAPIBurst: tc.optBurst})
			if err != nil {
				t.Fatal(err)
			}
			got := mgr.GetConfig()
			if got.QPS != tc.wantQPS || got.Burst != tc.wantBurst {
				t.Errorf("QPS, Burst = %v, %d; want %v, %d", got.QPS, got.Burst, tc.wantQPS, tc.wantBurst)
			}
			if cfg.QPS != tc.cfgQPS {
				t.Errorf("the caller's config was changed: QPS %v", cfg.QPS)
			}
		})
	}
}
