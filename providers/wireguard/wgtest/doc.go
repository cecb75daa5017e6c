// Package wgtest runs WireGuard devices inside the test process:
// wireguard-go's device with a gVisor netstack TUN, speaking real UDP on
// 127.0.0.1, so handshakes and the data plane are real and no root is
// needed. Tests and benchmarks of package wireguard and of rotation use it
// through Client, which satisfies wireguard.Client.
//
// It owns those devices, their keys and their teardown. It must not touch
// the host's interfaces or routes and sends packets only to 127.0.0.1.
package wgtest
