# want: 2:15
group "hello" {
  count = 3
}
