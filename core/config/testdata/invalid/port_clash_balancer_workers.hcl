# want: 10:15
group "hello" {
  port  = 6000
  count = 3
}

balancer "web" {
  group     = "hello"
  listeners = 2
  port      = 6002
}
