# want: 7:20
group "hello" {
  port = 6000
  scale {
    min = 0
    max = 3
    hold_timeout = "0s"
  }
}
