# want: 7:16
group "hello" {
  port = 6000
  scale {
    min = 0
    max = 3
    hold_max = -1
  }
}
