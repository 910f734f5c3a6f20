# want: 9:13
group "hello" {
  port = 6000
}

balancer "web" {
  group   = "hello"
  port    = 5050
  retries = -1
}
