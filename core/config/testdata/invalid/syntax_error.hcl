# want: 3:10
group "hello" {
  port = = 6000
}
