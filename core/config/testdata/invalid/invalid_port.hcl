# want: 3:10
group "hello" {
  port = 70000
}
