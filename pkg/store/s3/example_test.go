package s3_test

import (
	"context"
	"log"
	"os"

	"github.com/xs-backup/xs-backup/pkg/store"
	"github.com/xs-backup/xs-backup/pkg/store/s3"
)

// Open a store whose pack files live in a Garage bucket on the school's
// network. The directory keeps the index, the metadata and the packs being
// written. (Needs a running object store: compiled, not run.)
func Example() {
	ctx := context.Background()
	r, err := s3.New(s3.Config{
		Endpoint:  "garage.school.lan:3900",
		Bucket:    "xs-backup",
		Region:    "garage",
		Prefix:    "school1/",
		PathStyle: true,
		Insecure:  true,
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Check(ctx); err != nil {
		log.Fatal(err) // says what to fix: credentials, bucket, clock
	}
	st, err := store.Open(ctx, "/var/lib/xs-backup", store.Options{Remote: r})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
}
