// Package s3 keeps a store's pack files in an S3-compatible object store
// (Garage, Ceph RGW, SeaweedFS, MinIO, versitygw, AWS S3): it implements
// store.Remote with minio-go.
//
//	r, err := s3.New(s3.Config{Endpoint: "garage.school.lan:3900", Bucket: "xs-backup",
//		Region: "garage", AccessKey: key, SecretKey: secret, PathStyle: true})
//	st, err := store.Open(ctx, dir, store.Options{Remote: r})
//
// Objects are written whole (minio-go switches to a multipart upload for
// large ones), read by byte ranges, and never rewritten. Requests that
// fail for a reason worth retrying (timeouts, 5xx, 503 SlowDown, a
// connection dropped or a body cut short) are retried with backoff;
// errors that need a person (wrong credentials, a missing bucket, a clock
// too far off) are returned at once with a message saying what to fix.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/xs-backup/xs-backup/pkg/store"
)

// Config says where the bucket is and how to reach it.
type Config struct {
	// Endpoint is host:port of the object store (no scheme).
	Endpoint string
	// Bucket holds the objects; it must exist.
	Bucket string
	// Region of the bucket ("us-east-1" if empty; Garage wants "garage").
	Region string
	// Prefix is put before every object name ("school1/" keeps several
	// stores in one bucket).
	Prefix string
	// AccessKey and SecretKey are the credentials. Empty: taken from the
	// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment variables.
	AccessKey, SecretKey string
	// Insecure talks plain HTTP (a store on the school's own network).
	Insecure bool
	// PathStyle addresses the bucket in the path (endpoint/bucket/key), as
	// most self-hosted stores need, instead of as a host name.
	PathStyle bool
	// Retries is how often a failed request is tried again (default 6).
	Retries int
	// Timeout bounds one request (default 5 minutes; a pack is up to
	// 64 MiB).
	Timeout time.Duration
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
}

// Remote is a bucket (under a prefix) as a store.Remote.
type Remote struct {
	cfg Config
	c   *minio.Client
}

var _ store.Remote = (*Remote)(nil)

// metaSHA is the user metadata key that keeps a pack's SHA-256.
const metaSHA = "Xs-Sha256"

// New returns the Remote for cfg. It does not contact the object store:
// Check does.
func New(cfg Config) (*Remote, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("object store: endpoint and bucket are required")
	}
	if strings.Contains(cfg.Endpoint, "://") {
		return nil, fmt.Errorf("object store endpoint %q: give host:port without a scheme (plain HTTP is chosen by the insecure setting)", cfg.Endpoint)
	}
	if cfg.AccessKey == "" && cfg.SecretKey == "" {
		cfg.AccessKey, cfg.SecretKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("object store: no credentials (set the access key and secret, a credentials file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 6
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Prefix != "" && !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	opts := &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:     !cfg.Insecure,
		Region:     cfg.Region,
		Transport:  cfg.Transport,
		MaxRetries: 1, // retried here, where truncated bodies are retried too
	}
	if cfg.PathStyle {
		opts.BucketLookup = minio.BucketLookupPath
	}
	c, err := minio.New(cfg.Endpoint, opts)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", cfg.Endpoint, err)
	}
	return &Remote{cfg: cfg, c: c}, nil
}

func (r *Remote) String() string {
	return fmt.Sprintf("%s/%s/%s", r.cfg.Endpoint, r.cfg.Bucket, r.cfg.Prefix)
}

// Check makes sure the bucket exists and the credentials work.
func (r *Remote) Check(ctx context.Context) error {
	return r.retry(ctx, "check bucket", "", func(ctx context.Context) error {
		ok, err := r.c.BucketExists(ctx, r.cfg.Bucket)
		if err == nil && !ok {
			return minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}
		}
		return err
	}, true)
}

// Put implements store.Remote.
func (r *Remote) Put(ctx context.Context, name string, rd io.Reader, size int64, sha256 string) error {
	ra, seekable := rd.(io.ReaderAt)
	return r.retry(ctx, "put", name, func(ctx context.Context) error {
		body := rd
		if seekable {
			body = io.NewSectionReader(ra, 0, size) // from the start at every try
		}
		// The payload is not signed (a second SHA-256 pass on both sides);
		// a CRC32C checksum the server verifies guards the bytes instead.
		opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true, AutoChecksum: minio.ChecksumCRC32C}
		if sha256 != "" {
			opts.UserMetadata = map[string]string{metaSHA: sha256}
		}
		info, err := r.c.PutObject(ctx, r.cfg.Bucket, r.cfg.Prefix+name, body, size, opts)
		if err == nil && info.Size != size {
			err = fmt.Errorf("the object store stored %d bytes of %d", info.Size, size)
		}
		return err
	}, seekable)
}

// ReadAt implements store.Remote: one ranged GET.
func (r *Remote) ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	err := r.retry(ctx, "read", name, func(ctx context.Context) error {
		var opts minio.GetObjectOptions
		if err := opts.SetRange(off, off+int64(len(p))-1); err != nil {
			return err
		}
		obj, err := r.c.GetObject(ctx, r.cfg.Bucket, r.cfg.Prefix+name, opts)
		if err != nil {
			return err
		}
		defer obj.Close()
		n, err = io.ReadFull(obj, p)
		if resp := minio.ToErrorResponse(err); resp.Code == "InvalidRange" || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			// The range starts at or past the object's end: the object
			// is shorter than that (cut short), which the contract says
			// with fewer bytes, not as a failure of the object store.
			n = 0
			return nil
		}
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			// Fewer bytes than asked: the object's end, or a body cut short.
			st, serr := r.c.StatObject(ctx, r.cfg.Bucket, r.cfg.Prefix+name, minio.StatObjectOptions{})
			if serr != nil {
				return serr
			}
			if off+int64(n) >= st.Size {
				return nil
			}
			return fmt.Errorf("response cut short after %d of %d bytes: %w", n, len(p), io.ErrUnexpectedEOF)
		}
		return err
	}, true)
	return n, err
}

// Stat implements store.Remote.
func (r *Remote) Stat(ctx context.Context, name string) (store.ObjectInfo, error) {
	var oi store.ObjectInfo
	err := r.retry(ctx, "stat", name, func(ctx context.Context) error {
		st, err := r.c.StatObject(ctx, r.cfg.Bucket, r.cfg.Prefix+name, minio.StatObjectOptions{})
		if err != nil {
			return err
		}
		oi = store.ObjectInfo{Name: name, Size: st.Size}
		for k, v := range st.UserMetadata {
			if strings.EqualFold(k, metaSHA) {
				oi.SHA256 = v
			}
		}
		return nil
	}, true)
	return oi, err
}

// List implements store.Remote.
func (r *Remote) List(ctx context.Context, prefix string) ([]store.ObjectInfo, error) {
	var out []store.ObjectInfo
	err := r.retry(ctx, "list", prefix, func(ctx context.Context) error {
		out = out[:0]
		for o := range r.c.ListObjects(ctx, r.cfg.Bucket, minio.ListObjectsOptions{Prefix: r.cfg.Prefix + prefix, Recursive: true}) {
			if o.Err != nil {
				return o.Err
			}
			out = append(out, store.ObjectInfo{Name: strings.TrimPrefix(o.Key, r.cfg.Prefix), Size: o.Size})
		}
		return nil
	}, true)
	return out, err
}

// Delete implements store.Remote.
func (r *Remote) Delete(ctx context.Context, name string) error {
	err := r.retry(ctx, "delete", name, func(ctx context.Context) error {
		return r.c.RemoveObject(ctx, r.cfg.Bucket, r.cfg.Prefix+name, minio.RemoveObjectOptions{})
	}, true)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// retry runs fn until it succeeds, fails for a reason retrying cannot
// fix, or the tries run out; it returns the error explained.
func (r *Remote) retry(ctx context.Context, op, name string, fn func(context.Context) error, canRetry bool) error {
	var err error
	delay := 100 * time.Millisecond
	tries := 0
	for try := 0; try <= r.cfg.Retries; try++ {
		tries++
		if try > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(delay):
			}
			delay = min(2*delay, 5*time.Second)
		}
		tctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		err = fn(tctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !canRetry || !retryable(err) {
			break
		}
	}
	return r.explain(op, name, tries, err)
}

func retryable(err error) bool {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && resp.Code != "" {
		switch resp.Code {
		case "RequestError", "RequestTimeout", "Throttling", "ThrottlingException", "RequestLimitExceeded",
			"RequestThrottled", "InternalError", "SlowDown", "SlowDownWrite", "SlowDownRead", "ServiceUnavailable":
			return true
		}
		return resp.StatusCode >= 500 || resp.StatusCode == 408 || resp.StatusCode == 429
	}
	if errors.As(err, &resp) && resp.StatusCode != 0 {
		return resp.StatusCode >= 500 || resp.StatusCode == 408 || resp.StatusCode == 429
	}
	// Network errors: dropped connections, timeouts, bodies cut short.
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connection reset") ||
		strings.Contains(err.Error(), "broken pipe") || strings.Contains(err.Error(), "EOF")
}

// explain turns an object store error into one that says what happened
// and what to fix. A missing object matches os.ErrNotExist.
func (r *Remote) explain(op, name string, tries int, err error) error {
	where := fmt.Sprintf("object store %s", r)
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.Code {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("%s %s: %w", op, name, os.ErrNotExist)
		case "NoSuchBucket":
			return fmt.Errorf("%s: bucket %q does not exist: create it, or correct the bucket name in the configuration", where, r.cfg.Bucket)
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken":
			return fmt.Errorf("%s refused the credentials (%s: %s): check the access key and secret in the configuration or the credentials file", where, resp.Code, resp.Message)
		case "RequestTimeTooSkewed":
			return fmt.Errorf("%s: this server's clock differs too much from the object store's (%s): set the clock (NTP)", where, resp.Message)
		}
		if resp.StatusCode == http.StatusNotFound && resp.Code == "" {
			return fmt.Errorf("%s %s: %w", op, name, os.ErrNotExist)
		}
		return fmt.Errorf("%s: %s %s failed (%d tries): %s (%s, HTTP %d)", where, op, name, tries, resp.Message, resp.Code, resp.StatusCode)
	}
	return fmt.Errorf("%s: %s %s failed (%d tries; is the object store running and reachable?): %w", where, op, name, tries, err)
}
