# want: 4:11
group "hello" {
  port  = 6000
  count = workers
}
