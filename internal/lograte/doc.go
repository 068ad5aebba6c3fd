// Package lograte limits log lines written on request paths: at most one
// line per cause per interval, the next one carrying how many were
// suppressed in between, so that a flood of clients cannot flood the log.
package lograte
