# want: 9:15
group "hello" {
  port = 6000
}

balancer "web" {
  group     = "hello"
  port      = 5050
  policy    = "fastest"
}
