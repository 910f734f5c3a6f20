# want: 6:1
group "hello" {
  port = 6000
}

listener "web" {
  port = 5050
}
