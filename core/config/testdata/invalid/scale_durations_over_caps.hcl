# want: 7:27
group "s" {
  port = 40700
  scale {
    min                 = 0
    max                 = 2
    stable_window       = "61m"
    panic_window        = "2h"
    scale_down_delay    = "1h0m1s"
    scale_to_zero_after = "25h"
    hold_timeout        = "100000h"
  }
}
