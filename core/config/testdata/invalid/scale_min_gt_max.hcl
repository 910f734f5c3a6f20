# want: 6:11
group "hello" {
  port = 6000

  scale {
    min = 10
    max = 2
  }
}
