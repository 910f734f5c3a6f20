package proc_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/golb/golb/drivers"
	"github.com/golb/golb/drivers/proc"
)

func TestExitFinishOnce(t *testing.T) {
	e := proc.NewExit()
	if res, at, ok := e.Result(); ok || res != (drivers.ExitResult{}) || !at.IsZero() {
		t.Fatalf("Result before Finish = %+v, %v, %v; want nothing", res, at, ok)
	}
	select {
	case <-e.Done():
		t.Fatal("Done is closed before Finish")
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context: %v, want context.Canceled", err)
	}

	first := drivers.ExitResult{ExitCode: -1, Signal: 15}
	before := time.Now()
	e.Finish(first)
	after := time.Now()
	e.Finish(drivers.ExitResult{ExitCode: 3}) // ignored: the first result stands

	select {
	case <-e.Done():
	default:
		t.Fatal("Done is open after Finish")
	}
	res, at, ok := e.Result()
	if !ok || res != first {
		t.Errorf("Result = %+v, %v; want %+v", res, ok, first)
	}
	if at.Before(before) || at.After(after) || at.Location() != time.UTC {
		t.Errorf("exit time %v, want UTC within [%v, %v]", at, before, after)
	}
	if got, err := e.Wait(context.Background()); err != nil || got != first {
		t.Errorf("Wait = %+v, %v; want %+v", got, err, first)
	}
	// A result that is there is given even to a cancelled context.
	if got, err := e.Wait(ctx); err != nil || got != first {
		t.Errorf("Wait with a cancelled context after Finish = %+v, %v; want %+v", got, err, first)
	}
}

// TestExitConcurrentReaders runs readers against Finish; -race checks the
// result is published safely, and every reader gets the same result.
func TestExitConcurrentReaders(t *testing.T) {
	e := proc.NewExit()
	want := drivers.ExitResult{ExitCode: 2, Err: "boom"}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			got, err := e.Wait(ctx)
			if err != nil || got != want {
				errs <- errors.New("Wait: " + got.String())
			}
		}()
		go func() {
			defer wg.Done()
			for {
				if got, _, ok := e.Result(); ok {
					if got != want {
						errs <- errors.New("Result: " + got.String())
					}
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	var finishers sync.WaitGroup
	for range 4 {
		finishers.Add(1)
		go func() { defer finishers.Done(); e.Finish(want) }()
	}
	finishers.Wait()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
