# golb's embedded default: the seed's config.yaml on the process driver.
data_dir   = ".golb"
plugin_dir = "./plugins"

admin {
  address = "127.0.0.1:5040"
}

group "hello" {
  driver = "process"
  count  = 3
  port   = 6000

  app {
    avg_delay    = "500ms"
    failure_rate = 0.12
  }

  health_check {
    path     = "/healthz"
    interval = "5s"
    timeout  = "1s"
  }
}

balancer "web" {
  group     = "hello"
  port      = 5050
  listeners = 2
  policy    = "round_robin"
  retries   = 1
}

stats {
  sink = "sqlite"
  path = "worker-stats.db"
}
