# want: 4:3
group "hello" {
  port  = 6000
  cont  = 3
}
