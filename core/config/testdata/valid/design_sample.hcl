data_dir   = ".golb"            # state, pid files, image archives
plugin_dir = "./plugins"        # external drivers: golb-driver-NAME

admin {
  address = "127.0.0.1:5040"    # admin API, /metrics, dashboard; loopback by default
}

driver "docker" {               # optional: settings of a driver plugin itself
  host = "unix:///var/run/docker.sock"
}
driver "containerd" {
  address   = "/run/containerd/containerd.sock"
  namespace = "golb"
}

group "hello" {
  driver = "process"            # process | docker | containerd | any external driver
  count  = 3                    # desired workers when no scale block
  port   = 6000                 # first worker port; each worker gets the next free one

  app {                         # settings of the built-in worker app
    avg_delay    = "500ms"
    failure_rate = 0.12         # 0..1, exact
  }
  # or run your own HTTP service instead of the built-in worker:
  # config { image = "myapp:1.2" }            (docker, containerd: a local image)
  # config { command = ["./server", "-v"] }   (process; PORT is in its environment)

  scale {                       # optional autoscaling
    min             = 1
    max             = 10
    target_inflight = 10        # desired = ceil(observed in-flight / target)
  }

  health_check {
    path     = "/healthz"
    interval = "5s"
    timeout  = "1s"
  }
}

balancer "web" {
  group     = "hello"
  port      = 5050              # first listener port
  listeners = 2                 # the seed's "pool": ports 5050 and 5051
  policy    = "round_robin"     # round_robin | least_requests | random | p2c
  retries   = 1                 # on connection failure only, unless retry_on says more
}

stats {
  sink = "sqlite"               # default; others register behind the same interface
  path = "worker-stats.db"
}
