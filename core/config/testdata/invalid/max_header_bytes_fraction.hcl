# want: 9:22
group "hello" {
  port = 6000
}

balancer "web" {
  group            = "hello"
  port             = 5050
  max_header_bytes = 65536.5
}
