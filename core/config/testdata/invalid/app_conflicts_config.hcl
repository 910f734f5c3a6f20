# want: 10:15
group "hello" {
  port = 6000

  app {
    failure_rate = 0.5
  }

  config {
    command = ["./server", "-v"]
  }
}
