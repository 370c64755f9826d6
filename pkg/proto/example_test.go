package proto_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"log"
	"os"

	"github.com/xs-backup/xs-backup/pkg/proto"
	"github.com/xs-backup/xs-backup/pkg/server"
)

// Connect to a school server twice with one session cache: the second
// connection resumes the first one's TLS session, so it makes no signature
// and the laptop's key is not even needed (LoadKey is not called). Here the
// server runs in this process on loopback; on a laptop it is xs-backupd,
// and pkg/agent keeps the session in the laptop's state directory.
func ExampleClientConfig_sessions() {
	ctx, stop := context.WithCancel(context.Background())
	data, _ := os.MkdirTemp("", "proto-example-")
	defer os.RemoveAll(data)
	cfg := server.DefaultConfig()
	cfg.Listen, cfg.Data, cfg.Metrics, cfg.Reserve, cfg.RestorePage.Listen = "127.0.0.1:0", data, "", 0, ""
	d, err := server.NewDaemon(ctx, cfg, nil)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { stop(); <-done }()
	<-d.Ready

	key, _ := proto.GenerateKey()
	reg, err := proto.Register(ctx, d.Addr.String(), key, "SHC00000001", "Ana")
	if err != nil {
		log.Fatal(err)
	}
	sessions := tls.NewLRUClientSessionCache(1)
	for range 2 {
		c, err := proto.Dial(ctx, proto.ClientConfig{
			Addr:      d.Addr.String(),
			ServerKey: reg.ServerKey, // pinned at registration
			LoadKey: func() (ed25519.PrivateKey, error) {
				fmt.Println("the key is needed: a full handshake")
				return key, nil
			},
			Sessions: sessions,
		})
		if err != nil {
			log.Fatal(err)
		}
		g, err := c.Hello(ctx, "backup")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("granted:", g.Granted, "resumed:", c.Resumed())
		c.Close()
	}
	// Output:
	// the key is needed: a full handshake
	// granted: true resumed: false
	// granted: true resumed: true
}
