# want: 4:17
group "hello" {
  port        = 6000
  stop_signal = "SIGSTOP"
}
