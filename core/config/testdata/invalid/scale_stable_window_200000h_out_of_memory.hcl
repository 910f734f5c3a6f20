# want: 10:19
# win200k.hcl of the hostile-input tester: golb run allocated 23 GB in autoscale.New
admin { address = "127.0.0.1:40070" }
group "s" {
 port = 40700
 app { avg_delay = "1ms" }
 scale {
  min = 1
  max = 2
  stable_window = "200000h"
 }
}
balancer "b" {
 group = "s"
 port = 40710
}
