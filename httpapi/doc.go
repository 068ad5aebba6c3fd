// Package httpapi serves the agent's health endpoints with a chi router.
//
// Every handler reads the monitor's published, immutable state (an O(1)
// summary or the per-mount status values); none of them touches a
// filesystem, so they answer at once even while a mount is hung.
package httpapi
