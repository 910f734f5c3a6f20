package workerapp

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigFromEnvDefaults(t *testing.T) {
	cfg, err := ConfigFromEnv(envMap(map[string]string{"PORT": "6000"}))
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	host, _ := os.Hostname()
	want := Config{
		Port:         6000,
		BindAddr:     "127.0.0.1",
		WorkerID:     host,
		AvgDelay:     500 * time.Millisecond,
		FailureRate:  0,
		DrainTimeout: 10 * time.Second,
		AcceptGrace:  0,
	}
	if host == "" {
		want.WorkerID = cfg.WorkerID // fallback "worker-PID"; checked below
		if !strings.HasPrefix(cfg.WorkerID, "worker-") {
			t.Errorf("WorkerID = %q without a host name, want worker-PID", cfg.WorkerID)
		}
	}
	if cfg != want {
		t.Errorf("ConfigFromEnv defaults:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestConfigFromEnvReadsEverySetting(t *testing.T) {
	cfg, err := ConfigFromEnv(envMap(map[string]string{
		"PORT":               "6001",
		"BIND_ADDR":          "::1",
		"GOLB_WORKER_ID":     "w-7",
		"GOLB_AVG_DELAY":     "1.5s",
		"GOLB_FAILURE_RATE":  "0.12",
		"GOLB_DRAIN_TIMEOUT": "3s",
		"GOLB_ACCEPT_GRACE":  "250ms",
	}))
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	want := Config{Port: 6001, BindAddr: "::1", WorkerID: "w-7", AvgDelay: 1500 * time.Millisecond,
		FailureRate: 0.12, DrainTimeout: 3 * time.Second, AcceptGrace: 250 * time.Millisecond}
	if cfg != want {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}

	// The edges of each range are valid.
	for _, env := range []map[string]string{
		{"PORT": "1", "GOLB_FAILURE_RATE": "0", "GOLB_AVG_DELAY": "0s"},
		{"PORT": "65535", "GOLB_FAILURE_RATE": "1", "GOLB_AVG_DELAY": "1h"},
		{"PORT": " 6000 ", "GOLB_FAILURE_RATE": " 0.5 "},
	} {
		if _, err := ConfigFromEnv(envMap(env)); err != nil {
			t.Errorf("ConfigFromEnv(%v): %v", env, err)
		}
	}
}

func TestConfigFromEnvErrorsNameTheVariable(t *testing.T) {
	base := func(k, v string) map[string]string {
		m := map[string]string{"PORT": "6000"}
		m[k] = v
		return m
	}
	tests := []struct {
		name string
		env  map[string]string
		want string // the whole message
	}{
		{"missing port", map[string]string{}, `PORT is not set: must be a port number between 1 and 65535`},
		{"port zero", base("PORT", "0"), `PORT "0": must be a port number between 1 and 65535`},
		{"port too big", base("PORT", "65536"), `PORT "65536": must be a port number between 1 and 65535`},
		{"port negative", base("PORT", "-1"), `PORT "-1": must be a port number between 1 and 65535`},
		{"port not numeric", base("PORT", "http"), `PORT "http": must be a port number between 1 and 65535`},
		{"rate above 1", base("GOLB_FAILURE_RATE", "1.5"), `GOLB_FAILURE_RATE "1.5": must be between 0 and 1`},
		{"rate negative", base("GOLB_FAILURE_RATE", "-0.1"), `GOLB_FAILURE_RATE "-0.1": must be between 0 and 1`},
		{"rate percent", base("GOLB_FAILURE_RATE", "12%"), `GOLB_FAILURE_RATE "12%": not a number; must be between 0 and 1`},
		{"rate NaN", base("GOLB_FAILURE_RATE", "NaN"), `GOLB_FAILURE_RATE "NaN": must be between 0 and 1`},
		{"rate Inf", base("GOLB_FAILURE_RATE", "+Inf"), `GOLB_FAILURE_RATE "+Inf": must be between 0 and 1`},
		{"delay negative", base("GOLB_AVG_DELAY", "-1s"), `GOLB_AVG_DELAY "-1s": must be between 0s and 1h`},
		{"delay too long", base("GOLB_AVG_DELAY", "2h"), `GOLB_AVG_DELAY "2h": must be between 0s and 1h`},
		{"delay bare number", base("GOLB_AVG_DELAY", "500"), `GOLB_AVG_DELAY "500": not a Go duration (e.g. 500ms, 2s); must be between 0s and 1h`},
		{"drain zero", base("GOLB_DRAIN_TIMEOUT", "0s"), `GOLB_DRAIN_TIMEOUT "0s": must be a positive Go duration (e.g. 10s)`},
		{"drain garbage", base("GOLB_DRAIN_TIMEOUT", "soon"), `GOLB_DRAIN_TIMEOUT "soon": must be a positive Go duration (e.g. 10s)`},
		{"grace negative", base("GOLB_ACCEPT_GRACE", "-2s"), `GOLB_ACCEPT_GRACE "-2s": must not be negative`},
		{"bind with port", base("BIND_ADDR", "127.0.0.1:80"), `BIND_ADDR "127.0.0.1:80": must be an IP address or host name without a port (e.g. 127.0.0.1, ::1, 0.0.0.0)`},
		{"bind bracketed", base("BIND_ADDR", "[::1]"), `BIND_ADDR "[::1]": must be an IP address or host name without a port (e.g. 127.0.0.1, ::1, 0.0.0.0)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ConfigFromEnv(envMap(tt.env))
			if err == nil {
				t.Fatalf("ConfigFromEnv(%v) = %+v, want an error", tt.env, cfg)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("errors.Is(%v, ErrInvalidConfig) = false", err)
			}
			var se *SettingError
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not a *SettingError", err)
			}
			if _, named := tt.env[se.Setting]; !named && se.Setting != EnvPort {
				t.Errorf("error names %s, which the test did not set", se.Setting)
			}
		})
	}
}

func TestValidateStruct(t *testing.T) {
	// Zero fields with a default are valid; New fills them in.
	if err := (Config{Port: 8080}).Validate(); err != nil {
		t.Errorf("Validate(Config{Port: 8080}): %v", err)
	}
	s := New(Config{Port: 8080})
	got := s.Config()
	if got.BindAddr != DefaultBindAddr || got.DrainTimeout != DefaultDrainTimeout || got.WorkerID == "" {
		t.Errorf("New did not fill defaults: %+v", got)
	}
	if got.AvgDelay != 0 {
		t.Errorf("New changed a zero AvgDelay (meaning no delay) to %s", got.AvgDelay)
	}

	bad := []struct {
		cfg     Config
		setting string
	}{
		{Config{}, EnvPort},
		{Config{Port: 70000}, EnvPort},
		{Config{Port: 1, AvgDelay: -time.Millisecond}, EnvAvgDelay},
		{Config{Port: 1, FailureRate: 1.0000001}, EnvFailureRate},
		{Config{Port: 1, DrainTimeout: -time.Second}, EnvDrainTimeout},
		{Config{Port: 1, AcceptGrace: -time.Second}, EnvAcceptGrace},
		{Config{Port: 1, BindAddr: "a b"}, EnvBindAddr},
	}
	for _, tt := range bad {
		err := tt.cfg.Validate()
		var se *SettingError
		if !errors.As(err, &se) || se.Setting != tt.setting {
			t.Errorf("Validate(%+v) = %v, want a SettingError for %s", tt.cfg, err, tt.setting)
		}
	}
}
