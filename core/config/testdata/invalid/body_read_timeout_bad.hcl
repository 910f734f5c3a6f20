# want: 9:23
group "hello" {
  port = 6000
}

balancer "web" {
  group             = "hello"
  port              = 5050
  body_read_timeout = "10"
}
