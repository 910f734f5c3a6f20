# Three built-in workers as Docker containers behind two round-robin listeners.
#
#   golb run examples/docker.hcl
#   curl http://127.0.0.1:5150/api/v1/hello
#   docker ps --filter label=golb.managed=true
#
# No registry and no Dockerfile: golb builds the worker image around its own
# binary (golb-worker:<digest>) and loads it into the engine on the first
# start. Each worker's port is published on 127.0.0.1 only.

data_dir = ".golb-docker"

admin {
  address = "127.0.0.1:5140"
}

# Optional: the engine to use. Default: $DOCKER_HOST, else the local socket.
# driver "docker" {
#   host          = "unix:///var/run/docker.sock"
#   worker_binary = "/path/to/linux/golb"   # default: this golb binary
# }

group "hello" {
  driver = "docker"
  count  = 3
  port   = 6100

  app {
    avg_delay    = "200ms"
    failure_rate = 0.1
  }

  # Or run any local image that serves HTTP on $PORT (never pulled):
  # config { image = "myapp:1.2" }

  health_check {
    path     = "/healthz"
    interval = "2s"
    timeout  = "1s"
  }
}

balancer "web" {
  group     = "hello"
  port      = 5150
  listeners = 2
  policy    = "round_robin"
}

stats {
  sink = "sqlite"
  path = "docker-stats.db"
}
