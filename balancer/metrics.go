package balancer

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes the balancer's counters to Prometheus. It reads the
// same atomics as Stats at scrape time; nothing is counted twice. The
// balancer name is a constant label, so the collectors of several
// balancers register side by side.
//
//	golb_requests_total{balancer,worker,code_class}   attempts; code_class 1xx..5xx or error
//	golb_request_errors_total{balancer,worker}        failed attempts (5xx or transport error)
//	golb_request_duration_seconds{balancer,worker}    attempt duration histogram
//	golb_inflight_requests{balancer}
//	golb_worker_inflight_requests{balancer,worker}    current workers only
//	golb_worker_healthy{balancer,worker}              1 if a candidate; current workers only
//	golb_worker_ejections_total{balancer,worker}
//	golb_retries_total{balancer}
//	golb_retries_denied_total{balancer}               retries refused by the budget
//	golb_unavailable_total{balancer}                  503s: no healthy worker
//	golb_client_errors_total{balancer}                requests refused as the client's fault (400, 405, 408, 431, ...)
func (b *Balancer) Collector() prometheus.Collector {
	c := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, prometheus.Labels{"balancer": b.conf().Name})
	}
	return &collector{
		b:           b,
		requests:    c("golb_requests_total", "Proxied attempts by worker and status class (error: no answer).", "worker", "code_class"),
		errors:      c("golb_request_errors_total", "Failed attempts (5xx answer or transport error) by worker.", "worker"),
		duration:    c("golb_request_duration_seconds", "Duration of proxied attempts by worker.", "worker"),
		inflight:    c("golb_inflight_requests", "Requests in flight to workers."),
		wInflight:   c("golb_worker_inflight_requests", "Requests in flight to one worker.", "worker"),
		healthy:     c("golb_worker_healthy", "Whether the worker receives traffic (1) or not (0).", "worker"),
		ejections:   c("golb_worker_ejections_total", "Passive ejections by worker.", "worker"),
		retries:     c("golb_retries_total", "Retries granted."),
		denied:      c("golb_retries_denied_total", "Retries refused by the retry budget."),
		unavailable: c("golb_unavailable_total", "Requests answered 503 because no worker was healthy."),
		clientErrs:  c("golb_client_errors_total", "Requests refused as the client's own error (malformed, too large, too slow)."),
	}
}

type collector struct {
	b *Balancer

	requests, errors, duration, inflight, wInflight, healthy *prometheus.Desc
	ejections, retries, denied, unavailable, clientErrs      *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.requests, c.errors, c.duration, c.inflight, c.wInflight, c.healthy,
		c.ejections, c.retries, c.denied, c.unavailable, c.clientErrs,
	} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	now := time.Now().UnixNano()
	var inflight int64
	for _, be := range b.counted() {
		inflight += be.inflight.Load()
		for cl := range numClasses {
			ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue,
				float64(be.classes[cl].Load()), be.id, classNames[cl])
		}
		_, failed := be.counts()
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(failed), be.id)

		var count uint64
		buckets := make(map[float64]uint64, len(latencyBounds))
		for i, ub := range latencyBounds {
			count += be.buckets[i].Load()
			buckets[ub] = count
		}
		count += be.buckets[len(latencyBounds)].Load()
		sum := time.Duration(be.latencyNs.Load()).Seconds()
		ch <- prometheus.MustNewConstHistogram(c.duration, count, sum, buckets, be.id)

		ch <- prometheus.MustNewConstMetric(c.ejections, prometheus.CounterValue, float64(be.ejections.Load()), be.id)
		if !be.removed.Load() {
			v := 0.0
			if be.healthy.Load() && !be.ejected(now) {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, v, be.id)
			ch <- prometheus.MustNewConstMetric(c.wInflight, prometheus.GaugeValue, float64(be.inflight.Load()), be.id)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(inflight))
	ch <- prometheus.MustNewConstMetric(c.retries, prometheus.CounterValue, float64(b.retries.Load()))
	ch <- prometheus.MustNewConstMetric(c.denied, prometheus.CounterValue, float64(b.budgetDeny.Load()))
	ch <- prometheus.MustNewConstMetric(c.unavailable, prometheus.CounterValue, float64(b.unavailable.Load()))
	ch <- prometheus.MustNewConstMetric(c.clientErrs, prometheus.CounterValue, float64(b.clientErrors.Load()))
}

var _ prometheus.Collector = (*collector)(nil)
