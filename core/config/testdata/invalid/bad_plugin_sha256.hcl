# want: 8:12
group "hello" {
  port   = 6000
  driver = "podman"
}

plugin "podman" {
  sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85"
}
