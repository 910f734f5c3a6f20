# want: 7:16
group "hello" {
  port = 6000

  health_check {
    interval = "1s"
    timeout  = "3s"
  }
}
