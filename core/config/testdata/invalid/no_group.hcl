# want: 1:1
data_dir = ".golb"

balancer "web" {
  group = "hello"
  port  = 5050
}
