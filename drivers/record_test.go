package drivers

import (
	"errors"
	"testing"
	"time"
)

// TestRecordStateRoundTrip: a driver's state with Record embedded goes into
// a Handle and comes back whole; another version or a broken blob is stale.
func TestRecordStateRoundTrip(t *testing.T) {
	type state struct {
		Record
		PID int `json:"pid"`
	}
	in := state{Record: Record{Group: "g", Address: "127.0.0.1:6000", Labels: map[string]string{"a": "b"}, StartedAt: time.Unix(1, 0).UTC()}, PID: 42}
	hd := in.Handle("x", "g-1", 3, in)
	if hd.ID != "g-1" || hd.Driver != "x" || hd.Group != "g" || hd.Address != in.Address || hd.Labels["a"] != "b" || !hd.StartedAt.Equal(in.StartedAt) || hd.StateVersion != 3 {
		t.Fatalf("handle %+v does not carry the record %+v", hd, in)
	}
	var out state
	if err := DecodeState("x", 3, hd, &out); err != nil || out.PID != 42 || out.Group != "g" || out.Labels["a"] != "b" {
		t.Fatalf("DecodeState = %+v, %v; want %+v", out, err, in)
	}
	if err := DecodeState("x", 4, hd, &out); !errors.Is(err, ErrStaleHandle) {
		t.Errorf("another version: %v, want ErrStaleHandle", err)
	}
	hd.State = []byte("{broken")
	if err := DecodeState("x", 3, hd, &out); !errors.Is(err, ErrStaleHandle) {
		t.Errorf("a broken blob: %v, want ErrStaleHandle", err)
	}
}
