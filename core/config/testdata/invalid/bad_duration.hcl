# want: 6:20
group "hello" {
  port = 6000

  app {
    avg_delay    = "fast"
    failure_rate = 0.12
  }
}
