//go:build !linux

package discovery

import (
	"errors"
	"io"
)

// Parse fails: the mountinfo table is Linux's.
func Parse(r io.Reader, keep func(mountpoint, fstype string) bool) (map[string]Entry, error) {
	return nil, errors.New("parse mountinfo: mount discovery needs Linux")
}
