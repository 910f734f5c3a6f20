# want: 6:23
group "hello" {
  port = 6000
  scale {
    min             = 1
    target_rps      = 100
    max             = 3
    target_inflight = 4
  }
}
