package autoscale

import "time"

// Mode is the autoscaler's mode when it decided.
type Mode string

// The modes: stable scales on the stable window; panic, entered on a burst,
// scales on the panic window and never down.
const (
	ModeStable Mode = "stable"
	ModePanic  Mode = "panic"
)

// Metric is what the target is of.
type Metric string

// The metrics a target can be of.
const (
	MetricInflight Metric = "inflight"
	MetricRPS      Metric = "rps"
)

// Direction is which way a decision moves the desired count.
type Direction string

// The directions of a decision.
const (
	Up   Direction = "up"
	Down Direction = "down"
	None Direction = "none"
)

// Decision is one evaluation: the desired count it arrived at, why, and the
// figures behind it. From is the desired count it was given; To the one to
// apply (equal when nothing changes).
type Decision struct {
	Time      time.Time `json:"time"`
	Group     string    `json:"group,omitempty"` // set by the caller
	From      int       `json:"from"`
	To        int       `json:"to"`
	Direction Direction `json:"direction"`
	Mode      Mode      `json:"mode"`
	// Reason says, in one line, what decided To: the window and figures
	// it came from, or the bound, rate, delay or floor that held it.
	Reason string `json:"reason"`
	Figures
	// NoData is set while no sample has been recorded yet: To is From.
	NoData bool `json:"no_data,omitempty"`
}

// Figures are the numbers a decision is made of: the windowed averages of
// in-flight requests and of arrivals per second, the target (of Metric)
// and the ready workers.
type Figures struct {
	Metric         Metric  `json:"metric"`
	Target         float64 `json:"target"`
	StableInflight float64 `json:"stable_inflight"`
	PanicInflight  float64 `json:"panic_inflight"`
	StableRPS      float64 `json:"stable_rps"`
	PanicRPS       float64 `json:"panic_rps"`
	Ready          int     `json:"ready"`
}

// Changed reports whether the decision moves the desired count.
func (d Decision) Changed() bool { return d.To != d.From }

// DirectionOf is the direction of a change from from to to.
func DirectionOf(from, to int) Direction {
	switch {
	case to > from:
		return Up
	case to < from:
		return Down
	}
	return None
}
