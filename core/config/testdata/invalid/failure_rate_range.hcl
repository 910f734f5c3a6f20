# want: 6:20
group "hello" {
  port = 6000

  app {
    failure_rate = 12
  }
}
