# want: 7:23
group "hello" {
  port = 6000
  scale {
    min             = 1
    max             = 3
    target_inflight = 1e-18
  }
}
