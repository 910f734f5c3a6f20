# want: 9:19
group "hello" {
  port = 6000
}

balancer "web" {
  group         = "hello"
  port          = 5050
  body_min_rate = -1
}
