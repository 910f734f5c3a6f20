# want: 4:12
group "hello" {
  port  = 6000
  count = "three"
}
