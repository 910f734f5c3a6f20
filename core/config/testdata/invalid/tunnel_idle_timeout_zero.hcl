# want: 9:25
group "hello" {
  port = 6000
}

balancer "web" {
  group               = "hello"
  port                = 5050
  tunnel_idle_timeout = "0s"
}
