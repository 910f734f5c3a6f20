# want: 3:13
admin {
  address = "127.0.0.1:5040x"
}

group "hello" {
  port = 6000
}
