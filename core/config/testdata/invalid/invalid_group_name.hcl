# want: 2:7
group "hello world" {
  port = 6000
}
