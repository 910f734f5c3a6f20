package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// serverCPU is the core every server runs on: golb (and so its workers),
// HAProxy, nginx and Caddy.
const serverCPU = "0"

// helloPath is what wrk asks for.
const helloPath = "/api/v1/hello"

// path is one way to reach the workers: a proxy in front of them, or direct.
type path struct {
	name string
	port int
	// pids are the processes of the proxy that carry traffic; nil for direct.
	pids func() []int
	stop func()
	c    *child // the proxy's process, whose log explains errors; nil for direct
}

func (p *path) url() string { return fmt.Sprintf("http://127.0.0.1:%d%s", p.port, helloPath) }

// proxyPorts are each proxy's listener, as an offset from the workload's base port.
var proxyPorts = map[string]int{"golb": 10, "haproxy": 20, "nginx": 30, "caddy": 40}

// startProxy starts the named third-party proxy in front of upstreams
// (host:port) and waits until it answers.
func startProxy(ctx context.Context, name, bin, dir string, port int, upstreams []string) (*path, error) {
	dir = filepath.Join(dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var s spec
	var err error
	switch name {
	case "haproxy":
		s, err = haproxySpec(bin, dir, port, upstreams)
	case "nginx":
		s, err = nginxSpec(bin, dir, port, upstreams)
	case "caddy":
		s, err = caddySpec(bin, dir, port, upstreams)
	default:
		return nil, fmt.Errorf("unknown proxy %q", name)
	}
	if err != nil {
		return nil, err
	}
	c, err := startChild(s)
	if err != nil {
		return nil, err
	}
	p := &path{name: name, port: port, c: c, pids: func() []int { return []int{c.pid()} },
		stop: func() { c.stop(syscall.SIGTERM, true, 10*time.Second) }}
	// /healthz reaches a worker through the proxy at once, whatever the delay.
	if err := waitHTTP(ctx, c, fmt.Sprintf("http://127.0.0.1:%d/healthz", port), 30*time.Second); err != nil {
		p.stop()
		return nil, c.failed(err)
	}
	if name == "nginx" {
		// The master only forks and supervises: measure the worker(s).
		workers := childPids(c.pid())
		if len(workers) == 0 {
			p.stop()
			return nil, c.failed(fmt.Errorf("nginx: no worker process under master %d", c.pid()))
		}
		p.pids = func() []int {
			if w := childPids(c.pid()); len(w) > 0 {
				return w
			}
			return workers
		}
	}
	return p, nil
}

func writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// haproxyMaxconn is the largest maxconn (up to 20000) whose sockets fit the
// open-file limit: HAProxy reserves two per connection plus a few, and refuses
// to start when the hard limit is below that (20000 would need 40014 fds).
func haproxyMaxconn() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 4000
	}
	return int(min(20000, (lim.Cur-100)/2))
}

// haproxySpec: one process, one thread, no master-worker (-db stays in the
// foreground), keep-alive on both sides with server connections shared; only
// failed requests are logged (to stderr, so to its log).
func haproxySpec(bin, dir string, port int, upstreams []string) (spec, error) {
	var servers strings.Builder
	for i, u := range upstreams {
		fmt.Fprintf(&servers, "    server w%d %s\n", i, u)
	}
	cfg := fmt.Sprintf(`global
    nbthread 1
    maxconn %[1]d
    log stderr format raw local0

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    option dontlognull
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    timeout http-request 60s
    maxconn %[1]d

frontend fe
    bind 127.0.0.1:%[2]d
    default_backend workers

backend workers
    balance roundrobin
%[3]s`, haproxyMaxconn(), port, servers.String())
	file := filepath.Join(dir, "haproxy.cfg")
	if err := writeFile(file, cfg); err != nil {
		return spec{}, err
	}
	return spec{name: "haproxy", dir: dir, cpu: serverCPU, args: []string{bin, "-db", "-f", file}}, nil
}

// nginxSpec: one worker, every path nginx may write under dir, errors to
// stderr (its log), keep-alive to the workers. keepalive_requests is raised on both sides: nginx's default
// (1000) would close each connection after 1000 requests, which neither
// HAProxy nor golb does.
func nginxSpec(bin, dir string, port int, upstreams []string) (spec, error) {
	var servers strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&servers, "        server %s;\n", u)
	}
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return spec{}, err
		}
	}
	cfg := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid %[1]s/nginx.pid;
error_log stderr warn;

events {
    worker_connections 20000;
}

http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_timeout 60s;
    keepalive_requests 1000000;

    upstream workers {
%[3]s        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }

    server {
        listen 127.0.0.1:%[2]d backlog=16384;
        location / {
            proxy_pass http://workers;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 5s;
            proxy_read_timeout 60s;
            proxy_send_timeout 60s;
        }
    }
}
`, dir, port, servers.String())
	file := filepath.Join(dir, "nginx.conf")
	if err := writeFile(file, cfg); err != nil {
		return spec{}, err
	}
	return spec{name: "nginx", dir: dir, cpu: serverCPU,
		args: []string{bin, "-p", dir + "/", "-c", file, "-e", "stderr"}}, nil
}

// caddySpec: Caddyfile, admin and automatic HTTPS off, only errors logged, and
// HOME and the XDG directories in dir so that nothing lands in the real $HOME.
func caddySpec(bin, dir string, port int, upstreams []string) (spec, error) {
	home := filepath.Join(dir, "home")
	for _, d := range []string{home, filepath.Join(dir, "data"), filepath.Join(dir, "config")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return spec{}, err
		}
	}
	cfg := fmt.Sprintf(`{
	admin off
	auto_https off
	storage file_system %[1]s/data
	log {
		output stderr
		level ERROR
	}
}

:%[2]d {
	bind 127.0.0.1
	reverse_proxy %[3]s {
		lb_policy round_robin
	}
}
`, dir, port, strings.Join(upstreams, " "))
	file := filepath.Join(dir, "Caddyfile")
	if err := writeFile(file, cfg); err != nil {
		return spec{}, err
	}
	env := []string{"HOME=" + home, "XDG_DATA_HOME=" + filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config")}
	return spec{name: "caddy", dir: dir, cpu: serverCPU, env: env,
		args: []string{bin, "run", "--config", file, "--adapter", "caddyfile"}}, nil
}

// waitHTTP polls url until it answers 200, c exits, or timeout passes.
func waitHTTP(ctx context.Context, c *child, url string, timeout time.Duration) error {
	client := &http.Client{
		Timeout:   20 * time.Second, // a 10 s worker answers within 15 s
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if done, err := c.exited(); done {
			return err
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering 200 within %s: %v", c.name, timeout, last)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}
