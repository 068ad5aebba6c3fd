package testutil_test

import (
	"sync/atomic"
	"testing"

	"github.com/efs-health-agent/efs-health-agent/internal/testenv/testutil"
)

func TestWaitFor(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	testutil.WaitFor(t, "the third look", func() bool { return n.Add(1) == 3 })
	if n.Load() != 3 {
		t.Fatalf("looked %d times", n.Load())
	}
}

func TestRequireNil(t *testing.T) {
	t.Parallel()
	testutil.Require(t, nil) // neither skips nor fails
}
