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

// Every method of a closed store returns ErrClosed (or, for the in-memory
// listings, what it knew), and none panics: a request that races a shutdown
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
	closedErrs := 0
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
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s after Close panics: %v", m.Name, r)
				}
			}()
			out := m.Func.Call(args)
			for _, o := range out {
				if o.Type() == errType && !o.IsNil() {
					if errors.Is(o.Interface().(error), store.ErrClosed) {
						closedErrs++
					}
					if err := o.Interface().(error); !errors.Is(err, store.ErrClosed) && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrInvalid) {
						t.Errorf("%s after Close: %v, want ErrClosed", m.Name, err)
					}
				}
			}
		}()
	}
	t.Logf("%d methods called, %d answered ErrClosed", typ.NumMethod(), closedErrs)
	if closedErrs < typ.NumMethod()/2 {
		t.Fatalf("only %d of %d methods said the store is closed", closedErrs, typ.NumMethod())
	}
}
