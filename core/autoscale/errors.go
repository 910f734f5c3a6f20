package autoscale

import "errors"

// ErrSpec is wrapped by every Spec.Validate error.
var ErrSpec = errors.New("invalid scale spec")
