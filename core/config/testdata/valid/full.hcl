# Every attribute golb knows, set away from its default.
data_dir   = "/var/lib/golb"
plugin_dir = "/usr/lib/golb/plugins"

admin {
  address = ""
}

driver "process" {
  worker_command = ["/usr/bin/golb", "worker"]
}

plugin "podman" {
  sha256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
}

group "api" {
  driver       = "podman"
  port         = 8000
  stop_signal  = "sigint"
  stop_timeout = "30s"

  config {
    image   = "myapp:1.2"
    command = ["/app", "-v"]
  }

  scale {
    min             = 0
    max             = 20
    target_inflight = 2.5
  }

  health_check {
    path     = "/ready"
    interval = "2s"
    timeout  = "1500ms"
    rise     = 3
    fall     = 5
  }
}

group "hello" {
  count = 0
  port  = 9000

  app {
    avg_delay    = "1m"
    failure_rate = 1
  }
}

balancer "public" {
  group            = "api"
  port             = 80
  listeners        = 4
  policy           = "p2c"
  retries          = 0
  retry_on         = ["5xx", "connect-failure"]
  drain_timeout    = "1m30s"
  response_timeout = "5s"

  max_header_bytes    = 16384
  header_read_timeout = "3s"
  idle_timeout        = "30s"
  body_read_timeout   = "2500ms"
  body_min_rate       = 4096
}

balancer "internal" {
  group  = "hello"
  port   = 8020
  policy = "least_requests"
}

stats {
  sink           = "sqlite"
  path           = "/tmp/stats.db"
  flush_interval = "250ms"
}
