// Package proto holds the generated gRPC code of the golb driver protocol.
// Regenerate with `go generate ./drivers/proto` (needs protoc from Debian's
// protobuf-compiler and the generators below).
package proto

//go:generate sh -c "PATH=$PATH:$(go env GOPATH)/bin protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative driver.proto"
// Install the generators once with:
//   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
