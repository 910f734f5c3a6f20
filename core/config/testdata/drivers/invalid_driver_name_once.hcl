# want: 3:12
group "a" {
  driver = "no such"
  port   = 7000
}
