# A balancer's HTTP limits at the edges of their ranges, and the rate check
# turned off (body_min_rate = 0, which golb hands the balancer as "off").
group "hello" {
  port = 6000
}

balancer "small" {
  group               = "hello"
  port                = 5050
  max_header_bytes    = 1024
  header_read_timeout = "1ms"
  idle_timeout        = "1s"
  body_read_timeout   = "250ms"
  body_min_rate       = 0
  tunnel_idle_timeout = "30s"
}

balancer "large" {
  group               = "hello"
  port                = 5060
  max_header_bytes    = 1048576
  header_read_timeout = "1m"
  idle_timeout        = "1h"
  body_read_timeout   = "5m"
  body_min_rate       = 1048576
}
