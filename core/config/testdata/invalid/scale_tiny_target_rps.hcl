# want: 7:18
group "hello" {
  port = 6000
  scale {
    min        = 1
    max        = 3
    target_rps = 0.001
  }
}
