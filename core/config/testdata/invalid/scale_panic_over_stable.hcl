# want: 7:21
group "hello" {
  port = 6000
  scale {
    min = 1
    max = 3
    panic_window  = "90s"
    stable_window = "60s"
  }
}
