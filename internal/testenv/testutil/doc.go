// Package testutil holds the helpers the tests of every package share:
// waiting for a condition with a deadline generous enough for a loaded CI
// machine, and skipping a test that needs root or FUSE, except in CI
// (the CI environment variable set), where such a test fails instead:
// CI must run it. Only tests import it.
package testutil
