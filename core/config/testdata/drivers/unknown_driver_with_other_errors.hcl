# want: 3:12
group "a" {
  driver = "nosuch"
  count = -1
  port = 99999
}
balancer "web" {
  group = "zz"
  port = 5050
  policy = "bogus"
}
