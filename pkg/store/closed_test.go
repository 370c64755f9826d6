package store_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"go.uber.org/goleak"

	"github.com/xs-backup/xs-backup/internal/journalgen"
	"github.com/xs-backup/xs-backup/pkg/store"
)

// Every method of a closed store returns ErrClosed (those without an
// error result answer what they knew), and none panics: a request that races a shutdown
// must not bring the daemon down.
func TestEveryMethodAfterClose(t *testing.T) {
	// A store that was opened, used and closed leaves no goroutine behind
	// (Badger's included). Other tests break Badger on purpose, and it leaks
	// goroutines when its Open fails: those are ignored.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	s, err := store.Open(context.Background(), dir, store.Options{Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	u := addUser(t, s, "CLOSED1")
	src := t.TempDir()
	if _, err := journalgen.Generate(src, journalgen.Small(3)); err != nil {
		t.Fatal(err)
	}
	backupDir(t, s, u, src, nil)
	s.Close()
	v := reflect.ValueOf(s)
	typ := v.Type()
	ctxType := reflect.TypeOf((*context.Context)(nil)).Elem()
	errType := reflect.TypeOf((*error)(nil)).Elem()
	closedErrs, withErr := 0, 0
	for i := 0; i < typ.NumMethod(); i++ {
		m := typ.Method(i)
		args := []reflect.Value{v}
		for j := 1; j < m.Type.NumIn(); j++ {
			in := m.Type.In(j)
			switch {
			case in == ctxType:
				args = append(args, reflect.ValueOf(context.Background()))
			case in.Kind() == reflect.Pointer:
				args = append(args, reflect.New(in.Elem()))
			case in.Kind() == reflect.Func:
				args = append(args, reflect.MakeFunc(in, func([]reflect.Value) []reflect.Value {
					t.Errorf("%s called back after Close", m.Name)
					out := make([]reflect.Value, in.NumOut())
					for k := range out {
						out[k] = reflect.Zero(in.Out(k))
					}
					return out
				}))
			default:
				args = append(args, reflect.Zero(in))
			}
		}
		if m.Type.IsVariadic() {
			args = args[:len(args)-1]
		}
		if m.Name == "Close" {
			continue // closing twice is allowed (nil)
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s after Close panics: %v", m.Name, r)
				}
			}()
			out := m.Func.Call(args)
			for _, o := range out {
				if o.Type() != errType {
					continue
				}
				withErr++
				var err error
				if !o.IsNil() {
					err = o.Interface().(error)
				}
				if errors.Is(err, store.ErrClosed) {
					closedErrs++
				} else {
					t.Errorf("%s after Close: %v, want ErrClosed", m.Name, err)
				}
			}
		}()
	}
	t.Logf("%d methods called, %d of the %d that return an error answered ErrClosed", typ.NumMethod(), closedErrs, withErr)
	if withErr < 30 {
		t.Fatalf("only %d methods return an error: the reflection walk missed some", withErr)
	}
}
