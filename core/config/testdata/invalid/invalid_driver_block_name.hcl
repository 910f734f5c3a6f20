# want: 2:8
driver "docker/v2" {
  host = "unix:///var/run/docker.sock"
}

group "hello" {
  port = 6000
}
