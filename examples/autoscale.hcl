# Autoscaling, Knative KPA-style, with scale to zero that holds requests.
#
#   golb run examples/autoscale.hcl
#   wrk -t2 -c32 -d60s http://127.0.0.1:5050/api/v1/hello   # a step load
#   golb status                                           # mode and last decision
#   curl -s 127.0.0.1:5040/v1/groups/hello/events         # every decision, newest first
#
# Idle for scale_to_zero_after and the group has no worker; the next request
# is held (not refused) until one is healthy.

data_dir = ".golb-autoscale" # its own state, beside the default's .golb

admin {
  address = "127.0.0.1:5040"
}

group "hello" {
  driver = "process"
  port   = 6000

  app {
    avg_delay    = "200ms"
    failure_rate = 0
  }

  scale {
    min                 = 0      # 0: scale to zero; requests are then held
    max                 = 10
    target_inflight     = 4      # desired = ceil(stable-window in-flight / 4)
    stable_window       = "60s"
    panic_window        = "6s"
    panic_threshold     = 2.0    # panic when the burst needs 2 x the ready workers
    scale_down_delay    = "30s"
    max_scale_up_rate   = 1000
    max_scale_down_rate = 2
    scale_to_zero_after = "60s"
    hold_max            = 1000   # requests held while no worker is ready
    hold_timeout        = "30s"  # then 503 with Retry-After
  }

  health_check {
    path     = "/healthz"
    interval = "2s"
    timeout  = "1s"
  }
}

balancer "web" {
  group     = "hello"
  port      = 5050
  listeners = 1
}

stats {
  path = "autoscale-stats.db" # its own counts, beside the default's worker-stats.db
}
