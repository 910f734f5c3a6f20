# want: 8:22
group "hello" {
  port = 6000
}

balancer "web" {
  group            = "hello"
  response_timeout = "0s"
  port             = 5050
}
