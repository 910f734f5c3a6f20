# want: 7:27
group "hello" {
  port = 6000
  scale {
    min = 1
    max = 3
    scale_to_zero_after = "1m"
  }
}
