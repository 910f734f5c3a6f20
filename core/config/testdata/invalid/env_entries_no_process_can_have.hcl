# want: 5:20
# envnul.hcl, envnul2.hcl, envdt.hcl of the hostile-input tester: validated, then failed at start
group "a" {
  port = 40100
  config { env = { "X\u0000Y" = "c", X = "a\u0000b", "A=B" = "c", "" = "x", OK = "fine" } }
}
