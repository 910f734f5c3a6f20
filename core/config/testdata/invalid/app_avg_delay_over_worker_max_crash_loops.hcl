# want: 6:21
# avg2h.hcl of the hostile-input tester: validated, then every worker exited and the group crash-looped
group "a" {
  port  = 40110
  count = 2
  app { avg_delay = "2h" }
}
