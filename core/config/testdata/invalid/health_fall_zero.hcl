# want: 6:12
group "hello" {
  port = 6000

  health_check {
    fall = 0
  }
}
