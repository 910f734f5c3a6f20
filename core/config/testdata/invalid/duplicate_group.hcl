# want: 6:7
group "hello" {
  port = 6000
}

group "hello" {
  port = 7000
}
