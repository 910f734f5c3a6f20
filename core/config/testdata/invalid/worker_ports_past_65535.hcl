# want: 3:10
group "hello" {
  port = 65530

  scale {
    min = 1
    max = 10
  }
}
