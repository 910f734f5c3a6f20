# want: 6:12
plugin_dir = "testdata/plugins"

# extra is an executable golb-driver-extra there; noexec is not executable.
group "a" {
  driver = "noexec"
  port   = 7000
}

group "b" {
  driver = "extra"
  port   = 7100
}

group "c" {
  port = 7200
}
