package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/xs-backup/xs-backup/pkg/store"
	"github.com/xs-backup/xs-backup/pkg/store/s3"
)

// Storage is the [storage] section: where the store's pack files live.
//
//	[storage]
//	backend = "s3"                  # "local" (default): packs in the data directory
//	endpoint = "garage.lan:3900"    # host:port, no scheme
//	bucket = "xs-backup"
//	region = "garage"
//	prefix = "school1/"
//	path_style = true               # self-hosted stores (Garage, Ceph RGW, SeaweedFS, MinIO)
//	insecure = false                # true: plain HTTP on the school's own network
//	credentials_file = "/etc/xs-backup/s3.credentials"
//
// Without credentials_file the keys come from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY. The data directory still holds the index, the
// metadata (also copied to the bucket) and the packs being written.
type Storage struct {
	Backend   string `toml:"backend"`
	Endpoint  string `toml:"endpoint"`
	Bucket    string `toml:"bucket"`
	Region    string `toml:"region"`
	Prefix    string `toml:"prefix"`
	PathStyle bool   `toml:"path_style"`
	Insecure  bool   `toml:"insecure"`
	// CredentialsFile holds the keys: "access_key = ..." and
	// "secret_key = ..." lines (an AWS credentials file's
	// aws_access_key_id and aws_secret_access_key also do).
	CredentialsFile string `toml:"credentials_file"`
	// CacheBytes bounds the cache of pack records read from the bucket
	// (default 128MiB); Parallel the ranged reads in flight (default 8).
	CacheBytes Size `toml:"cache_bytes"`
	Parallel   int  `toml:"parallel"`
}

// Validate checks the section.
func (st *Storage) Validate() error {
	switch st.Backend {
	case "", "local":
		if st.Endpoint != "" || st.Bucket != "" {
			return fmt.Errorf("storage: endpoint and bucket are set but backend is not \"s3\"")
		}
		return nil
	case "s3":
		if st.Endpoint == "" || st.Bucket == "" {
			return fmt.Errorf("storage: backend \"s3\" needs endpoint and bucket")
		}
		if strings.Contains(st.Endpoint, "://") {
			return fmt.Errorf("storage.endpoint is host:port without a scheme (insecure = true for plain HTTP), not %q", st.Endpoint)
		}
		return nil
	}
	return fmt.Errorf("storage.backend must be \"local\" or \"s3\", not %q", st.Backend)
}

// S3 reports whether the packs live in an object store.
func (st *Storage) S3() bool { return st.Backend == "s3" }

// Remote builds the store.Remote the section describes (nil for the
// local backend) and checks that the bucket answers.
func (st *Storage) Remote(ctx context.Context) (store.Remote, error) {
	if !st.S3() {
		return nil, nil
	}
	cfg, err := st.S3Config()
	if err != nil {
		return nil, err
	}
	r, err := s3.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := r.Check(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// S3Config is the s3.Config of the section, credentials read.
func (st *Storage) S3Config() (s3.Config, error) {
	cfg := s3.Config{Endpoint: st.Endpoint, Bucket: st.Bucket, Region: st.Region, Prefix: st.Prefix,
		PathStyle: st.PathStyle, Insecure: st.Insecure}
	if st.CredentialsFile != "" {
		b, err := os.ReadFile(st.CredentialsFile)
		if err != nil {
			return cfg, fmt.Errorf("storage.credentials_file: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), "=")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
			switch k {
			case "access_key", "aws_access_key_id":
				cfg.AccessKey = v
			case "secret_key", "aws_secret_access_key":
				cfg.SecretKey = v
			}
		}
		if cfg.AccessKey == "" || cfg.SecretKey == "" {
			return cfg, fmt.Errorf("storage.credentials_file %s: wants access_key and secret_key lines", st.CredentialsFile)
		}
	}
	return cfg, nil
}

// StoreOptions adds the section's settings to opts.
func (st *Storage) StoreOptions(ctx context.Context, opts *store.Options) error {
	r, err := st.Remote(ctx)
	if err != nil {
		return err
	}
	opts.Remote = r
	opts.RemoteCache = int64(st.CacheBytes)
	opts.RemoteParallel = st.Parallel
	return nil
}
