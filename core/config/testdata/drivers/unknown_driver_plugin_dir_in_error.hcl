# want: 2:14
plugin_dir = ["testdata/plugins"]

# Where the plugins are is unknown, so nosuch is not reported.
group "a" {
  driver = "nosuch"
  port   = 7000
}
