//go:build !linux

package probes

import "fmt"

// On other systems every step that touches the mount fails with
// ErrUnsupported.
type sysState struct{}

func (*sysState) close()   {}
func (*sysState) release() {}

func (r *run) open() error    { return ErrUnsupported }
func (r *run) statfs() error  { return ErrUnsupported }
func (r *run) write() error   { return ErrUnsupported }
func (r *run) read() error    { return ErrUnsupported }
func (r *run) delete() error  { return ErrUnsupported }
func (r *run) stat() error    { return ErrUnsupported }
func (r *run) readdir() error { return ErrUnsupported }

func openRoot(root string) (int, error) {
	return -1, fmt.Errorf("mount root %q: %w", root, ErrUnsupported)
}

func retryEINTR(f func() error) error { return f() }

func openProbeDir(int) (int, error) { return -1, ErrUnsupported }
