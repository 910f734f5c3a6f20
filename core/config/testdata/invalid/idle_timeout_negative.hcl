# want: 9:18
group "hello" {
  port = 6000
}

balancer "web" {
  group        = "hello"
  port         = 5050
  idle_timeout = "-1s"
}
