# want: 7:15
group "hello" {
  port = 6000
}

balancer "web" {
  group     = "helo"
  port      = 5050
}
