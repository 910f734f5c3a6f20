# Every field of the scale block, and one group scaling to zero on rps.
group "api" {
  port = 6000
  scale {
    min                 = 1
    max                 = 10
    target_inflight     = 4
    stable_window       = "30s"
    panic_window        = "3s"
    panic_threshold     = 1.5
    scale_down_delay    = "10s"
    max_scale_up_rate   = 10
    max_scale_down_rate = 4
    hold_max            = 50
    hold_timeout        = "5s"
  }
}

group "batch" {
  port = 6100
  scale {
    min                 = 0
    max                 = 4
    target_rps          = 200
    stable_window       = "2m"
    scale_to_zero_after = "5m"
    scale_down_delay    = "0s"
  }
}

group "defaults" {
  port = 6200
  scale {
    min = 0
    max = 2
  }
}
