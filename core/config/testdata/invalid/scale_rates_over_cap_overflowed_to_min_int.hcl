# want: 7:27
group "hello" {
  port = 6000
  scale {
    min                 = 1
    max                 = 3
    max_scale_up_rate   = 1e19
    max_scale_down_rate = 2000000
  }
}
