// Package layers holds the test that keeps the module's imports pointing
// down: each package may import only packages of a lower layer (see
// layers_test.go for the map). `make test` runs it.
package layers
