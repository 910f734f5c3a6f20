# want: 7:21
group "hello" {
  port = 6000
  scale {
    min = 1
    max = 3
    stable_window = "500ms"
  }
}
