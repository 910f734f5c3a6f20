# want: 11:10
group "hello" {
  port = 6000
}

balancer "web" {
  group = "hello"
  port  = 5050
}

balancer "web" {
  group = "hello"
  port  = 5060
}
