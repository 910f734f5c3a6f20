group "a" { port = 7000 }
