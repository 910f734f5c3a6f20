# want: 5:25
# hcpath.hcl of the hostile-input tester: validated, then no worker ever became healthy
group "a" {
  port = 40100
  health_check { path = "/%zz" }
}
