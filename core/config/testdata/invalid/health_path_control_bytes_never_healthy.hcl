# want: 5:25
# hcpath2.hcl of the hostile-input tester: a request line with a header smuggled in
group "a" {
  port = 40100
  health_check { path = "/ x\r\nHost: evil" }
}
