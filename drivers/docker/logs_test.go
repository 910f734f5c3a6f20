package docker

import (
	"strings"
	"testing"
)

func TestTailBuffer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		max    int
		want   string
	}{
		{"fits", []string{"a\n", "b\n"}, 10, "a\nb\n"},
		{"old lines go, from a line start", []string{"first line\n", "second\n", "third\n"}, 16, "second\nthird\n"},
		{"one write larger than the buffer", []string{"xx\n" + strings.Repeat("y", 20) + "\nlast\n"}, 8, "last\n"},
		{"one long line is kept", []string{"abcdef", "ghij"}, 4, "ghij"},
	} {
		b := &tailBuffer{max: tc.max}
		for _, w := range tc.writes {
			if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("%s: Write(%q) = %d, %v", tc.name, w, n, err)
			}
		}
		if len(b.buf) > tc.max {
			t.Errorf("%s: kept %d bytes, max %d", tc.name, len(b.buf), tc.max)
		}
		if got := string(b.Bytes()); got != tc.want {
			t.Errorf("%s: Bytes() = %q, want %q", tc.name, got, tc.want)
		}
	}
}
