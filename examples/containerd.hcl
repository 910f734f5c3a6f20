# Three built-in workers as containerd tasks behind two round-robin listeners,
# on a host with containerd and runc but no Docker daemon.
#
#   sudo golb run examples/containerd.hcl
#   curl http://127.0.0.1:5250/api/v1/hello
#   sudo ctr -n golb containers ls
#   sudo ctr -n golb tasks ls
#
# No registry and no Dockerfile: golb builds the worker image around its own
# binary (golb-worker:<digest>), imports it into the namespace and unpacks it
# on the overlayfs snapshotter on the first start. Tasks use the host's
# network; each worker binds its own port on 127.0.0.1.

data_dir = ".golb-containerd"

admin {
  address = "127.0.0.1:5240"
}

# The daemon to use. containerd's socket is root's: run golb as root, or let
# its user open the socket (containerd's [grpc] uid/gid).
driver "containerd" {
  address   = "/run/containerd/containerd.sock"
  namespace = "golb"
  # worker_binary = "/path/to/linux/golb"   # default: this golb binary
  # runc_root     = "/run/golb/runc"        # default: the runtime's own
  # cgroup_parent = "/golb"                 # default: /NAMESPACE
}

group "hello" {
  driver = "containerd"
  count  = 3
  port   = 6200

  app {
    avg_delay    = "200ms"
    failure_rate = 0.1
  }

  # Or run an image already in the namespace that serves HTTP on
  # $BIND_ADDR:$PORT (never pulled: `ctr -n golb images import FILE.tar`):
  # config { image = "myapp:1.2" }

  health_check {
    path     = "/healthz"
    interval = "2s"
    timeout  = "1s"
  }
}

balancer "web" {
  group     = "hello"
  port      = 5250
  listeners = 2
  policy    = "round_robin"
}

stats {
  sink = "sqlite"
  path = "containerd-stats.db"
}
