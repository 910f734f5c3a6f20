# want: 3:12
group "a" {
  driver = "nosuch"
  port   = 7000
  bogus  = 1
}

# A driver that did not decode is not resolved: its own error is enough.
group "b" {
  driver = ["x"]
  port   = "p"
}

group "c" {
  driver = "alsomissing"
  port   = 7100
  health_check {
    rise = "many"
  }
}
