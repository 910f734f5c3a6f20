# want: 3:13
admin {
  address = "127.0.0.1:5051"
}

group "hello" {
  port = 6000
}

balancer "web" {
  group     = "hello"
  port      = 5050
  listeners = 2
}
