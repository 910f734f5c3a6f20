# want: 4:11
group "hello" {
  port  = 6000
  count = 20

  scale {
    min = 1
    max = 10
  }
}
